"""mmdavit: DaViT (Dual Attention Vision Transformer) for mmpretrain, mmdet and mmseg.

The environment (torch, a compiled mmcv, the OpenMMLab task repos) is built by ``tools/setup_env.sh`` because mmcv
has to be compiled against the installed torch; ``install_requires`` therefore lists only what the backbone itself
needs, and ``extras_require`` names the rest for users who manage their own stack.
"""
from setuptools import find_packages, setup


def parse_requirements(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                out.append(line)
    return out


setup(
    name='mmdavit',
    version='0.1.0',
    description='DaViT: Dual Attention Vision Transformers for OpenMMLab 2.x (classification, detection, segmentation)',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['davit_backbone*', 'mmcls_davit*', 'mmdet_davit*', 'mmseg_davit*', 'mmdavit*']),
    include_package_data=True,
    install_requires=['torch>=2.0'],
    extras_require={
        'mim': parse_requirements('requirements/mminstall.txt'),
        'all': parse_requirements('requirements/mminstall.txt') + parse_requirements('requirements/optional.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
    },
    zip_safe=False,
)

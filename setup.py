"""mmdavit: DaViT (Dual Attention Vision Transformer) for mmpretrain, mmdet and mmseg.

The environment (torch, a compiled mmcv, the OpenMMLab task repos) is built by ``tools/setup_env.sh`` because mmcv
has to be compiled against the installed torch; ``install_requires`` therefore lists only what the backbone itself
needs, and ``extras_require`` names the rest for users who manage their own stack.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup


def add_mim_extension():
    """Puts configs/, tools/ and model-index.yml under mmdavit/.mim so ``mim train/test/search mmdavit`` find them,
    as OpenMMLab packages do: symlinks for editable installs (edits show at once), copies when building a wheel."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build', 'build_py')):
        mode = 'copy'
    else:
        return
    here = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(here, 'mmdavit', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = osp.join(here, name), osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


add_mim_extension()


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
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['davit_backbone*', 'davit_deploy*', 'mmcls_davit*', 'mmdet_davit*',
                                    'mmseg_davit*', 'mmdavit*']),
    include_package_data=True,
    package_data={'mmdavit': ['.mim/model-index.yml', '.mim/configs/**/*.py', '.mim/tools/*']},
    install_requires=['torch>=2.0'],
    extras_require={
        'mim': parse_requirements('requirements/mminstall.txt'),
        'all': parse_requirements('requirements/mminstall.txt') + parse_requirements('requirements/optional.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        # running a tools/deploy.py folder (davit_deploy): no torch, no OpenMMLab
        'deploy': parse_requirements('requirements/deploy.txt'),
    },
    zip_safe=False,
)

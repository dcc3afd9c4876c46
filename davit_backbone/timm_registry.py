"""Registers the classifiers with timm (when installed) under the original release's names, ``DaViT_tiny`` etc.,
so that ``timm.create_model('DaViT_tiny')`` and timm's train.py / validate.py work as in the paper's repository.
"""
from __future__ import annotations

from .davit import IMAGENET_MEAN, IMAGENET_STD, DaViT, arch_zoo

TIMM_NAMES = {f'DaViT_{name}': name for name in arch_zoo}


def _pretrained_cfg(arch: str) -> dict:
    # crop_pct 0.875 (resize 256 -> crop 224) as the official release evaluated; timm's davit_* cfg says 0.95
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                interpolation='bicubic', mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv='stem.conv',
                classifier='head.fc', architecture=f'DaViT_{arch}')


def create_classifier(arch: str, pretrained: bool = False, num_classes: int = 1000, in_chans: int = 3,
                      drop_rate: float = 0., drop_path_rate: float = 0.1, pretrained_file: str = None, **kwargs):
    """timm entry point: ``kwargs`` may carry timm's own plumbing (pretrained_cfg, global_pool, ...), ignored."""
    for key in ('pretrained_cfg', 'pretrained_cfg_overlay', 'global_pool', 'cache_dir', 'drop_block_rate',
                'bn_momentum', 'bn_eps', 'scriptable', 'exportable', 'no_jit', 'checkpoint_path'):
        kwargs.pop(key, None)
    if pretrained:
        raise RuntimeError('DaViT_* has no download URL here: pass pretrained_file=PATH, or '
                           "timm.create_model(..., checkpoint_path=PATH) with a converted checkpoint.")
    model = DaViT(arch, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                  drop_path_rate=drop_path_rate, **kwargs)
    model.pretrained_cfg = model.default_cfg = _pretrained_cfg(arch)
    if pretrained_file:
        from .pretrained import load_pretrained
        load_pretrained(model, pretrained_file, strict=True)
    return model


def _register() -> bool:
    try:
        from timm.models import register_model
        from timm.models._registry import _model_entrypoints
    except Exception:  # timm absent or too old: the backbone works without it
        return False
    for timm_name, arch in TIMM_NAMES.items():
        if timm_name in _model_entrypoints:
            continue

        def entry(pretrained=False, _arch=arch, **kwargs):
            return create_classifier(_arch, pretrained=pretrained, **kwargs)

        entry.__name__ = timm_name
        entry.__qualname__ = timm_name
        entry.__module__ = __name__
        register_model(entry)
    return True


REGISTERED = _register()

"""DaViT backbone in pure PyTorch (no OpenMMLab import).

>>> from davit_backbone import DaViT
>>> feats = DaViT('tiny')(torch.randn(1, 3, 224, 224))        # 4 NCHW maps, strides 4..32
>>> logits = DaViT('tiny', num_classes=1000)(torch.randn(1, 3, 224, 224))
"""
from .checkpoint import allow_checkpoint_globals, load_file
from .convert import CheckpointFormatError, convert_state_dict, detect_format, to_official
from .davit import DaViT, arch_zoo, count_params, expected_out_shapes, resolve_arch
from .pretrained import load_pretrained
from . import timm_registry  # noqa: F401  registers DaViT_tiny ... with timm when timm is installed

__all__ = ['DaViT', 'arch_zoo', 'resolve_arch', 'count_params', 'expected_out_shapes', 'convert_state_dict',
           'detect_format', 'to_official', 'CheckpointFormatError', 'load_pretrained', 'load_file',
           'allow_checkpoint_globals']
__version__ = '0.1.0'

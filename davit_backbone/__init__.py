"""DaViT in pure PyTorch (no OpenMMLab import).

>>> from davit_backbone import DaViT
>>> logits = DaViT('tiny')(torch.randn(1, 3, 224, 224))                              # (1, 1000)
>>> maps = DaViT('tiny', with_head=False, out_indices=(0, 1, 2, 3)).forward_dense(x)  # 4 NCHW maps, strides 4..32

Importing it has one side effect, only with timm installed: timm's ``register_model`` adds ``DaViT_tiny`` ...
``DaViT_giant`` to timm's registry (as timm's own model files do on import).
"""
from .convert import CheckpointFormatError, convert_state_dict, detect_format, to_florence2, to_official
from .davit import DaViT, arch_zoo, resolve_arch
from .loading import checkpoint_filter_fn, load_file, load_pretrained

__all__ = ['DaViT', 'arch_zoo', 'resolve_arch', 'convert_state_dict', 'detect_format', 'to_official', 'to_florence2',
           'CheckpointFormatError', 'load_pretrained', 'load_file', 'checkpoint_filter_fn']
__version__ = '0.1.0'

"""DaViT: Dual Attention Vision Transformers (Ding et al., ECCV 2022), in plain PyTorch.

One implementation serves every task. ``DaViT`` follows timm's model conventions (``forward_features`` -> NCHW map,
``forward_head``, ``num_classes=0`` -> pooled features, ``forward_intermediates``, ``feature_info``) and adds the
dense-task outputs the detection/segmentation release has: ``forward_dense`` returns a LayerNorm-ed NCHW map per
``out_indices`` entry (``norm{i}``). mmpretrain, mmdet and mmseg adapt this module (``mmdavit``); none copies it.

Layout: the stem (7x7 conv, stride 4) and each downsample (LayerNorm, 2x2 conv, stride 2) change resolution; each stage
is a run of dual blocks, a dual block being a spatial (window) attention block followed by a channel (group)
attention block, and each sub-block is ``x += ConvPosEnc(x); x += Attn(LN(x)); x += ConvPosEnc(x); x += MLP(LN(x))``.

Why it looks the way it does:
- Tokens stay in a (B, H, W, C) tensor between layers: LayerNorm and Linear work on the last dim as is, and the
  depthwise convs read the same memory as a channels_last NCHW view, so blocks need no transpose copies.
- This file is the model as the paper writes it, and what TorchScript, torch.fx and torch.compile see. The CPU fast
  paths (fused oneDNN linears, in-place residual sums, ...) live in ``kernels.py`` behind one switch; each sub-block
  hands itself to them only in eager fp32 CPU runs, and tests prove both give the same outputs and gradients.
- Any input size works: the stem pads to a multiple of 4, downsampling to even sizes and window attention to the
  window size, all on the right/bottom (as the official code does), and results are cropped back. Those
  shape-dependent helpers are leaves for torch.fx (``torch.fx.wrap``) so that tracing does not branch on sizes.
"""

import contextlib
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from . import kernels
from .padding import _pad_hw, _pad_image, _window_size
from .loading import load_file
from .loading import checkpoint_filter_fn  # noqa: F401  timm looks it up in the model's module

__all__ = ['DaViT', 'arch_zoo', 'ARCH_OPTIONS', 'resolve_arch', 'IMAGENET_MEAN', 'IMAGENET_STD']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The published variants. Depths count dual blocks (one spatial + one channel block each).
arch_zoo: Dict[str, dict] = {
    'tiny': dict(embed_dims=(96, 192, 384, 768), depths=(1, 1, 3, 1), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dims=(96, 192, 384, 768), depths=(1, 1, 9, 1), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dims=(128, 256, 512, 1024), depths=(1, 1, 9, 1), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dims=(192, 384, 768, 1536), depths=(1, 1, 9, 1), num_heads=(6, 12, 24, 48)),
    'huge': dict(embed_dims=(256, 512, 1024, 2048), depths=(1, 1, 9, 1), num_heads=(8, 16, 32, 64)),
    'giant': dict(embed_dims=(384, 768, 1536, 3072), depths=(1, 1, 12, 3), num_heads=(12, 24, 48, 96)),
    # The official release's DaViT_large_window12_384 (ImageNet-22k, fine-tuned at 384x384): windows of 12.
    'large_window12': dict(embed_dims=(192, 384, 768, 1536), depths=(1, 1, 9, 1), num_heads=(6, 12, 24, 48),
                           window_size=12),
    # Florence-2's vision towers (timm's suffix _fl): Florence-2-base is DaViT-B, Florence-2-large DaViT-H, both
    # with windows of 12, 3x3 downsampling convs and channel attention v2 (see ChannelAttention).
    'base_fl': dict(embed_dims=(128, 256, 512, 1024), depths=(1, 1, 9, 1), num_heads=(4, 8, 16, 32),
                    window_size=12, down_kernel_size=3, channel_attn_v2=True),
    'huge_fl': dict(embed_dims=(256, 512, 1024, 2048), depths=(1, 1, 9, 1), num_heads=(8, 16, 32, 64),
                    window_size=12, down_kernel_size=3, channel_attn_v2=True),
}
# Options an arch may carry besides its size; DaViT's explicit arguments of the same names override them.
ARCH_OPTIONS = dict(window_size=7, down_kernel_size=2, channel_attn_v2=False)
_ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'h': 'huge', 'g': 'giant'}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Returns the ``embed_dims/depths/num_heads`` dict for an arch name (or its first letter) or a custom dict,
    with the variant options (``ARCH_OPTIONS``: window size, downsample kernel, channel-attention v2) it sets."""
    if isinstance(arch, str):
        name = _ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in arch_zoo:
            raise ValueError(f'Unknown DaViT arch {arch!r}; choose one of {sorted(arch_zoo)} '
                             f'(or their first letters), or pass a dict with embed_dims, depths and num_heads.')
        return dict(arch_zoo[name])
    missing = {'embed_dims', 'depths', 'num_heads'} - set(arch)
    if missing:
        raise ValueError(f'A custom DaViT arch dict needs the keys {sorted(missing)}.')
    unknown = set(arch) - {'embed_dims', 'depths', 'num_heads'} - set(ARCH_OPTIONS)
    if unknown:  # a misspelt option would otherwise be ignored silently
        raise ValueError(f'A custom DaViT arch dict takes embed_dims, depths, num_heads and {sorted(ARCH_OPTIONS)}; '
                         f'remove {sorted(unknown)}.')
    arch = dict(arch)
    if isinstance(arch['embed_dims'], int):  # mmpretrain style: one width, doubled per stage
        arch['embed_dims'] = tuple(arch['embed_dims'] * 2 ** i for i in range(len(arch['depths'])))
    if not len(arch['embed_dims']) == len(arch['depths']) == len(arch['num_heads']):
        raise ValueError(f'embed_dims, depths and num_heads must have one entry per stage, got {arch}.')
    return arch


def _per_stage(value, num_stages: int, name: str) -> list:
    """One value for every stage, or a sequence with one per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f'{name} has {len(value)} entries for {num_stages} stages')
        return list(value)
    return [value] * num_stages


# ----------------------------------------------------------------------------------- shape helpers (fx leaves)
def _check_image_batch(x: torch.Tensor, in_chans: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError('DaViT expects images of shape (B, {}, H, W), got {}'.format(in_chans, list(x.shape)))


for _fn in (_check_image_batch, _pad_hw, _pad_image, _window_size):
    torch.fx.wrap(_fn.__name__)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * windows, window_size ** 2, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.transpose(2, 3).reshape(-1, window_size * window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """The inverse of ``window_partition``: (B * windows, window_size ** 2, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, C)
    return x.transpose(2, 3).reshape(-1, height, width, C)


# ------------------------------------------------------------------------------------------------------ layers
class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class Stem(nn.Module):
    """7x7 conv with stride ``patch_size`` (4) then LayerNorm: (B, 3, H, W) -> (B, H/4, W/4, C), sizes rounded up."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.conv = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=patch_size, padding=3)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_image(x, self.patch_size)  # as the official PatchEmbed: right/bottom up to a stride multiple
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """LayerNorm then a stride-2 conv: (B, H, W, C) -> (B, H/2, W/2, C'), sizes rounded up.

    ``kernel_size`` 2 (the ECCV release): no padding, the map is zero-padded to even sizes first; 3 (Florence-2):
    padding 1, which gives the same rounded-up sizes with no extra padding.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 2):
        super().__init__()
        if kernel_size not in (2, 3):
            raise ValueError(f'down_kernel_size must be 2 (ECCV DaViT) or 3 (Florence-2), got {kernel_size}')
        self.pad_even = kernel_size == 2
        self.norm = nn.LayerNorm(in_dim)
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=kernel_size, stride=2, padding=kernel_size // 2 if kernel_size == 3 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.pad_even:
            x = _pad_hw(x, 2, 2)
        # an NCHW conv on the permuted view, which is channels_last in memory: no copy either way
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvPosEnc(nn.Module):
    """Convolutional position encoding: ``x + DWConv3x3(x)`` on (B, H, W, C)."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Mlp(nn.Module):
    """Linear, exact GELU, Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window: (B*nW, N, C) -> (B*nW, N, C), N = window_size**2."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale = head_dim ** -0.5, as the paper
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ChannelAttention(nn.Module):
    """Channel group attention: each head attends over its channels, with all N tokens as the feature.

    (B, N, C) -> (B, N, C). The ECCV formula is ``softmax(scale * K^T V) Q^T`` with ``scale = head_dim ** -0.5``,
    which is scaled-dot-product attention with query ``K^T``, key ``V^T`` and value ``Q^T``.

    ``v2`` (Florence-2's DaViT): ``softmax(N ** -0.5 * Q^T K) V^T``, i.e. the usual roles of q, k, v, and a dynamic
    scale from the token count N. N is the real (unpadded) number of tokens of the map: the channel block pads
    nothing (only window attention pads, inside the spatial block), as in timm's ``ChannelAttentionV2``, so the same
    image gives the same scale whatever the window size.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, v2: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.v2 = v2
        self.scale = (dim // num_heads) ** -0.5  # v1's; v2 computes its own from N
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # (B, heads, head_dim, N) each: the token axis is the feature axis of this attention
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 4, 1).unbind(0)
        # The scale multiplies the query, as in timm's ChannelAttention(V2), and SDPA's own ``scale`` is 1: v2's
        # depends on N, and SDPA's argument must be a Python float, which a tracer bakes in at the traced N (and
        # torch.export specialises); and mmdeploy 1.3's rewrite of SDPA divides by ``scale`` where torch
        # multiplies, which 1 survives.
        if self.v2:
            x = F.scaled_dot_product_attention(q * torch.scalar_tensor(N, dtype=q.dtype, device=q.device).rsqrt(),
                                               k, v, scale=1.0)
        else:
            x = F.scaled_dot_product_attention(k * self.scale, v, q, scale=1.0)
        return self.proj(x.permute(0, 3, 1, 2).reshape(B, N, C))

    def extra_repr(self) -> str:
        return 'v2 (scale N ** -0.5)' if self.v2 else f'scale={self.scale:.4g}'



class _SubBlock(nn.Module):
    """What both sub-blocks share, on (B, H, W, C): ``x += CPE(x); x += Attn(LN(x)); x += CPE(x); x += MLP(LN(x))``.
    Subclasses give the attention module and ``attend``, which applies it to the normalised (B, H, W, C) map."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.cpe1 = ConvPosEnc(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.cpe2 = ConvPosEnc(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # TorchScript compiles only the plain path below
            if kernels.applies(self, x):
                return kernels.sub_block(self, x)
        x = self.cpe1(x)
        x = x + self.drop_path(self.attend(self.norm1(x)))
        x = self.cpe2(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SpatialBlock(_SubBlock):
    """Window-attention sub-block: non-overlapping windows, bottom/right zero-padded."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_path: float = 0., pad_small_map: bool = True):
        super().__init__(dim, WindowAttention(dim, num_heads, qkv_bias), mlp_ratio, drop_path)
        self.window_size = window_size
        self.pad_small_map = pad_small_map

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        B, H, W, C = y.shape
        ws = _window_size(H, W, self.window_size, self.pad_small_map)
        y = _pad_hw(y, ws, ws)  # after the norm, as officially: padded tokens are zeros, not LayerNorm(0) = bias
        Hp, Wp = y.shape[1], y.shape[2]
        y = window_reverse(self.attn(window_partition(y, ws)), ws, Hp, Wp)
        return y[:, :H, :W]


class ChannelBlock(_SubBlock):
    """Channel-attention sub-block: global over all tokens, linear in their number."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path: float = 0., channel_attn_v2: bool = False):
        super().__init__(dim, ChannelAttention(dim, num_heads, qkv_bias, channel_attn_v2), mlp_ratio, drop_path)

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        B, H, W, C = y.shape
        return self.attn(y.reshape(B, H * W, C)).view(B, H, W, C)


class DualBlock(nn.Module):
    """A spatial block then a channel block: the unit the paper's depths count."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Tuple[float, float], pad_small_map: bool = True, channel_attn_v2: bool = False):
        super().__init__()
        self.spatial_block = SpatialBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, drop_paths[0],
                                          pad_small_map)
        self.channel_block = ChannelBlock(dim, num_heads, mlp_ratio, qkv_bias, drop_paths[1], channel_attn_v2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_block(self.spatial_block(x))


class DaViTStage(nn.Module):
    """Optional downsample, then ``depth`` dual blocks. (B, H, W, C_in) -> (B, H', W', C)."""

    def __init__(self, in_dim: Optional[int], dim: int, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop_paths: Sequence[float], with_cp: bool = False,
                 pad_small_map: bool = True, down_kernel_size: int = 2, channel_attn_v2: bool = False):
        super().__init__()
        self.downsample = Downsample(in_dim, dim, down_kernel_size) if in_dim is not None else nn.Identity()
        self.blocks = nn.Sequential(*[
            DualBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, tuple(drop_paths[2 * i:2 * i + 2]),
                      pad_small_map, channel_attn_v2)
            for i in range(depth)])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_blocks(self.downsample(x))

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if self.with_cp and torch.is_grad_enabled():
                for block in self.blocks:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                return x
        return self.blocks(x)


class UnsupportedPoolError(ValueError, AssertionError):
    """A pooling the head does not have. Also an AssertionError: timm's model tests expect that type there."""


def _check_pool(global_pool: str) -> str:
    if global_pool not in ('avg', ''):
        raise UnsupportedPoolError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
    return global_pool


class ClassifierHead(nn.Module):
    """Global average pool, LayerNorm, Linear: the official order (pool before norm), on an NCHW map.

    ``global_pool=''`` keeps the map: the norm (and the Linear, if any) then act on each position's channels.
    """

    def __init__(self, dim: int, num_classes: int, global_pool: str = 'avg', drop_rate: float = 0.):
        super().__init__()
        self.global_pool = _check_pool(global_pool)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = self.norm(x.mean(dim=(2, 3)))
            return x if pre_logits else self.fc(self.drop(x))
        x = self.norm(x.permute(0, 2, 3, 1))
        if not pre_logits:
            x = self.fc(self.drop(x))
        return x.permute(0, 3, 1, 2)


def _take_indices(num_stages: int, indices: Optional[Union[int, Sequence[int]]]) -> Tuple[List[int], int]:
    """timm's convention: None -> every stage, int n -> the last n, a sequence -> those (negative from the end)."""
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f'last-n indices ({indices}) must lie in 1..{num_stages}')
        take = list(range(num_stages - indices, num_stages))
    else:
        if any(not -num_stages <= i < num_stages for i in indices):
            raise ValueError(f'indices {list(indices)} must lie in -{num_stages}..{num_stages - 1}')
        take = [i % num_stages for i in indices]
    return take, max(take)


# ------------------------------------------------------------------------------------------------------- model
class DaViT(nn.Module):
    """DaViT classifier (timm's conventions) with the dense-task outputs of the detection/segmentation release.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' | 'huge' | 'giant' (or 't', 's', ...), 'large_window12' (the
            official DaViT_large_window12_384), 'base_fl' | 'huge_fl' (Florence-2-base / -large's vision tower), or a
            dict with ``embed_dims`` (4 ints, or one int doubled per stage), ``depths``, ``num_heads`` and optionally
            the options below that an arch carries (``window_size``, ``down_kernel_size``, ``channel_attn_v2``).
        in_chans: input channels.
        num_classes: classes of the head's Linear; 0 leaves the pooled, normalised features (timm's convention).
        global_pool: 'avg' (the paper) or '' (no pooling: ``forward`` returns the normalised NCHW map).
        with_head: False builds no classifier head at all (a detection/segmentation backbone): ``forward`` then
            returns the last stage's NCHW map and ``forward_dense`` the normalised maps of ``out_indices``.
        out_indices: stages (0..3, negative from the end) that ``forward_dense`` returns, each behind its own
            LayerNorm ``norm{i}`` as the official dense backbone; empty (timm's models) builds none.
        out_after_downsample: ``forward_dense`` returns stage i's map after the next stage's downsample (mmpretrain's
            option; its ``norm{i}`` then has the next stage's width). The last stage has no downsample after it.
        patch_size: the stem's stride.
        window_size, mlp_ratio, qkv_bias: as in the paper (7, 4, True); one value or one per stage. None (the
            default) for ``window_size``: the arch's (12 for the Florence-2 and window12 variants, else 7).
        down_kernel_size: the downsampling convs' kernel: 2 (ECCV, no padding) or 3 (Florence-2, padding 1);
            None: the arch's.
        channel_attn_v2: Florence-2's channel attention (``softmax(Q^T K / sqrt(N)) V^T``, see
            ``ChannelAttention``); None: the arch's.
        pad_small_map: True (the paper): maps smaller than a window are zero-padded up to it; False (mmpretrain's
            default): the window shrinks to the map. One value or one per stage.
        drop_rate: dropout before the head's Linear.
        drop_path_rate: stochastic depth, rising linearly over all sub-blocks (spatial and channel) as officially.
        frozen_stages: -1 freezes nothing; 0 the stem; k >= 1 the stem and stages 0..k-1 with their output norms
            (mmdet's Swin/ResNet convention; mmpretrain's differs by one, see ``mmdavit.DaViTMMPretrain``).
        with_cp: gradient checkpointing per dual block: less activation memory for ~30% more compute.
        device, dtype: where and in which dtype parameters are created (timm's factory passes them).

    Shapes, input (B, 3, H, W): stage i's map is (B, embed_dims[i], ceil(H / 2**(i+2)), ceil(W / 2**(i+2))).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_chans: int = 3,
                 num_classes: int = 1000,
                 global_pool: str = 'avg',
                 with_head: bool = True,
                 out_indices: Sequence[int] = (),
                 out_after_downsample: bool = False,
                 patch_size: int = 4,
                 window_size: Union[int, Sequence[int], None] = None,
                 down_kernel_size: Optional[int] = None,
                 channel_attn_v2: Optional[bool] = None,
                 mlp_ratio: Union[float, Sequence[float]] = 4.,
                 qkv_bias: Union[bool, Sequence[bool]] = True,
                 pad_small_map: Union[bool, Sequence[bool]] = True,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 device=None,
                 dtype=None):
        super().__init__()
        arch = resolve_arch(arch)
        self.arch = arch
        self.embed_dims = tuple(arch['embed_dims'])
        self.depths = tuple(arch['depths'])
        self.num_heads = tuple(arch['num_heads'])
        self.num_stages = len(self.depths)
        for d, h in zip(self.embed_dims, self.num_heads):
            if d % h:
                raise ValueError(f'embed dim {d} is not divisible by its {h} heads')
        self.in_chans = in_chans
        self.num_classes = num_classes if with_head else 0
        self.with_head = with_head
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        # explicit arguments win over what the arch carries, which wins over the ECCV defaults
        window_size = arch.get('window_size', ARCH_OPTIONS['window_size']) if window_size is None else window_size
        self.down_kernel_size = (arch.get('down_kernel_size', ARCH_OPTIONS['down_kernel_size'])
                                 if down_kernel_size is None else down_kernel_size)
        self.channel_attn_v2 = bool(arch.get('channel_attn_v2', ARCH_OPTIONS['channel_attn_v2'])
                                    if channel_attn_v2 is None else channel_attn_v2)
        self.window_size = window_size
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.out_after_downsample = out_after_downsample
        self.out_indices = self._resolve_out_indices(out_indices)
        self.feature_info = [dict(num_chs=d, reduction=patch_size * 2 ** i, module=f'stages.{i}')
                             for i, d in enumerate(self.embed_dims)]

        n = self.num_stages
        window_sizes, mlp_ratios = _per_stage(window_size, n, 'window_size'), _per_stage(mlp_ratio, n, 'mlp_ratio')
        # a per-stage list may leave stages to the arch (mmpretrain's stage_cfgs setting only some of them)
        window_sizes = [arch.get('window_size', ARCH_OPTIONS['window_size']) if w is None else w for w in window_sizes]
        qkv_biases, pad_small = _per_stage(qkv_bias, n, 'qkv_bias'), _per_stage(pad_small_map, n, 'pad_small_map')
        # linspace over every sub-block (2 per dual block), indexed 2 * block + (0 spatial | 1 channel); on the CPU
        # whatever device the model is built on (a meta tensor has no values to list)
        dpr = torch.linspace(0, drop_path_rate, 2 * sum(self.depths), device='cpu').tolist()
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.stem = Stem(in_chans, self.embed_dims[0], patch_size)
            stages, offset = [], 0
            for i, depth in enumerate(self.depths):
                stages.append(DaViTStage(
                    self.embed_dims[i - 1] if i > 0 else None, self.embed_dims[i], depth, self.num_heads[i],
                    window_sizes[i], mlp_ratios[i], qkv_biases[i], dpr[offset:offset + 2 * depth], with_cp,
                    pad_small[i], self.down_kernel_size, self.channel_attn_v2))
                offset += 2 * depth
            self.stages = nn.Sequential(*stages)
            if with_head:
                self.head = ClassifierHead(self.num_features, num_classes, global_pool, drop_rate)
            for i in self.out_indices:
                width = self.embed_dims[min(i + 1, n - 1)] if out_after_downsample else self.embed_dims[i]
                self.add_module(f'norm{i}', nn.LayerNorm(width))
        self.apply(self._init_weights)
        if dtype is not None:
            self.to(dtype=dtype)
        self._freeze_stages()

    def _resolve_out_indices(self, out_indices) -> Tuple[int, ...]:
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        if any(not -self.num_stages <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must lie in 0..{self.num_stages - 1} (or count from -1)')
        return tuple(i % self.num_stages for i in out_indices)  # -1 means the last stage, as in OpenMMLab

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # the official init: truncated normal for Linear weights, PyTorch defaults for convs and norms
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------------ forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> the last stage's map, NCHW (a channels_last view: no copy)."""
        _check_image_batch(x, self.in_chans)
        return self.stages(self.stem(x)).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.with_head:
            x = self.forward_head(x)
        return x

    @torch.jit.ignore
    def forward_dense(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C_in, H, W) -> tuple of LayerNorm-ed NCHW maps for ``out_indices`` (the detection backbone)."""
        _check_image_batch(x, self.in_chans)
        x = self.stem(x)
        outs = {}
        last = max(self.out_indices, default=-1)
        downsampled = False
        for i, stage in enumerate(self.stages):
            if i > last:  # later stages feed nothing that is returned
                break
            x = stage.forward_blocks(x) if downsampled else stage(x)
            # out_after_downsample: the next stage's downsample runs here, once, for the output and for that stage
            downsampled = self.out_after_downsample and i + 1 < self.num_stages
            if downsampled:
                x = self.stages[i + 1].downsample(x)
            if i in self.out_indices:
                outs[i] = getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous()
        return tuple(outs[i] for i in self.out_indices)

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """timm's feature API: the raw (un-normalised) NCHW map of each stage in ``indices``.

        ``norm`` is accepted for timm's callers; DaViT has no norm between the last stage and the head.
        Returns the maps, or (final features as ``forward_features``, maps).
        """
        if output_fmt != 'NCHW':
            raise ValueError("DaViT's intermediates are NCHW")
        _check_image_batch(x, self.in_chans)
        take, max_index = _take_indices(len(self.stages), indices)
        x = self.stem(x)
        intermediates = []
        for i, stage in enumerate(self.stages):
            if stop_early and i > max_index:
                break
            x = stage(x)
            if i in take:
                intermediates.append(x.permute(0, 3, 1, 2).contiguous())
        if intermediates_only:
            return intermediates
        return x.permute(0, 3, 1, 2), intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """timm's pruning for feature extraction: drops the stages after the last index (and the head)."""
        take, max_index = _take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:  # the features now end at the last kept stage; the head was sized for the final one
            self.num_features = self.head_hidden_size = self.embed_dims[max_index]
        if self.with_head and (prune_head or prune_end):
            self.reset_classifier(0, '', reset_other=True)
        return take

    # ------------------------------------------------------------------------------- training conveniences
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.stem] + [self.stages[i] for i in range(min(self.frozen_stages, self.num_stages))]
        frozen += [getattr(self, f'norm{i}') for i in self.out_indices if i < self.frozen_stages]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()  # frozen parts stay in eval mode whatever the caller asks
        return self

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's name for ``with_cp``."""
        self.with_cp = enable
        for stage in self.stages:
            stage.with_cp = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise lr decay: stem, then each stage (coarse) or block."""
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else [
            (r'^stages\.(\d+)\.downsample', (0,)),
            (r'^stages\.(\d+)\.blocks\.(\d+)', None),
        ])

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, reset_other: bool = False) -> None:
        """timm API: a new Linear for ``num_classes`` (0: none, the head returns pre-logits), made on the model's
        device and dtype. ``global_pool`` None keeps the current pooling; ``reset_other`` also drops the head's norm
        (a pass-through head for pruned feature extractors)."""
        ref = next(self.parameters())
        dd = dict(device=ref.device, dtype=ref.dtype)
        if global_pool is not None:
            self.head.global_pool = _check_pool(global_pool)
        if reset_other:
            self.head.norm = nn.Identity()
        if self.head.num_features != self.num_features:
            self.head.norm = nn.LayerNorm(self.num_features, **dd) if not reset_other else nn.Identity()
            self.head.num_features = self.num_features
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        if num_classes > 0 and ref.device.type != 'meta':
            self._init_weights(self.head.fc)
        self.head.train(self.head.training)

    @torch.jit.ignore
    def no_weight_decay_keywords(self):
        """Parameter name fragments exempt from weight decay (the official Swin/DaViT recipes' keywords)."""
        return {'cpe', 'norm', 'bias'}

    # ------------------------------------------------------------------------ where the loading doors report
    def _log_load(self, message: str) -> None:
        """Where ``load_pretrained``'s report goes; the OpenMMLab adapter sends it to mmengine's logger."""
        import logging
        logging.getLogger('davit_backbone').info(message)


# ------------------------------------------------------------------------------------------ timm entry points
# With timm installed, importing this module registers the original release's names with timm's registry, the way
# timm's own model files do (timm's ``register_model``; ``list_models(module='davit')`` finds them beside timm's
# ``davit_*``): ``timm.create_model('DaViT_tiny', features_only=True)``, timm's train/validate scripts and
# ``pretrained=True`` (timm's published weights of the official release, through ``checkpoint_filter_fn``) all work.
def _timm_cfg(hf_hub_id: str = '', **kwargs) -> dict:
    # crop_pct 0.875 (resize 256 -> crop 224) as the official release evaluated; timm's davit_* cfg says 0.95
    return dict(dict(url='', hf_hub_id=hf_hub_id or None, num_classes=1000, input_size=(3, 224, 224),
                     pool_size=(7, 7), crop_pct=0.875, interpolation='bicubic', mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     first_conv='stem.conv', classifier='head.fc', license='apache-2.0'), **kwargs)


try:
    from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
except ImportError:  # timm is optional: the model works without it
    register_model = None

if register_model is not None:
    default_cfgs = generate_default_cfgs({
        'DaViT_tiny.msft_in1k': _timm_cfg('timm/davit_tiny.msft_in1k'),
        'DaViT_small.msft_in1k': _timm_cfg('timm/davit_small.msft_in1k'),
        'DaViT_base.msft_in1k': _timm_cfg('timm/davit_base.msft_in1k'),
        'DaViT_large': _timm_cfg(),
        'DaViT_huge': _timm_cfg(),
        'DaViT_giant': _timm_cfg(),
        # the official release's ImageNet-22k model fine-tuned at 384 (no timm-hosted copy: load the file)
        'DaViT_large_window12_384': _timm_cfg(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
        # Florence-2's towers as timm's davit_*_fl: no classifier (num_classes=0), 768x768 as Florence-2 runs them;
        # the hub file is the whole VLM, of which the converter takes the vision tower
        'DaViT_base_fl.msft_florence2': _timm_cfg('microsoft/Florence-2-base', num_classes=0,
                                                  input_size=(3, 768, 768), pool_size=(24, 24), crop_pct=1.0),
        'DaViT_huge_fl.msft_florence2': _timm_cfg('microsoft/Florence-2-large', num_classes=0,
                                                  input_size=(3, 768, 768), pool_size=(24, 24), crop_pct=1.0),
    })

    def _create_davit(variant: str, pretrained: bool = False, **kwargs) -> DaViT:
        # features_only goes through forward_intermediates (timm's 'getter'): stage outputs are NHWC inside the
        # model, so hooking the stage modules (timm's default) would hand out channels-last tensors
        out_indices = kwargs.pop('out_indices', tuple(range(4)))
        if {'embed_dims', 'depths', 'num_heads'} & set(kwargs):  # timm's davit spells the arch as three kwargs
            kwargs['arch'] = dict(resolve_arch(kwargs['arch']), **{k: kwargs.pop(k) for k in
                                                                  ('embed_dims', 'depths', 'num_heads') if k in kwargs})
        if variant.endswith('_fl'):
            # Florence-2's tower has no head norm: as timm's davit_*_fl, that one LayerNorm stays as initialised
            # (identity); every other key is still checked (checkpoint_filter_fn: the whole tower)
            kwargs.setdefault('pretrained_strict', False)
        overlay = kwargs.get('pretrained_cfg_overlay') or {}
        file = overlay.get('file')
        if pretrained and file and (os.path.isdir(file) or str(file).endswith('.index.json')):
            # timm reads one file; a save_pretrained folder or a sharded index is read here and handed over as the
            # state dict (timm's own 'state_dict' source), through the same filter
            kwargs['pretrained_cfg_overlay'] = dict({k: v for k, v in overlay.items() if k != 'file'},
                                                    state_dict=load_file(file))
        return build_model_with_cfg(DaViT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                    feature_cfg=dict(out_indices=out_indices, feature_cls='getter'), **kwargs)

    @register_model
    def DaViT_tiny(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_tiny', pretrained, **dict(arch='tiny', **kwargs))

    @register_model
    def DaViT_small(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_small', pretrained, **dict(arch='small', **kwargs))

    @register_model
    def DaViT_base(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_base', pretrained, **dict(arch='base', **kwargs))

    @register_model
    def DaViT_large(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_large', pretrained, **dict(arch='large', **kwargs))

    @register_model
    def DaViT_huge(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_huge', pretrained, **dict(arch='huge', **kwargs))

    @register_model
    def DaViT_giant(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_giant', pretrained, **dict(arch='giant', **kwargs))

    @register_model
    def DaViT_large_window12_384(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_large_window12_384', pretrained, **dict(arch='large_window12', **kwargs))

    @register_model
    def DaViT_base_fl(pretrained: bool = False, **kwargs) -> DaViT:
        return _create_davit('DaViT_base_fl', pretrained, **dict(arch='base_fl', **kwargs))

    @register_model
    def DaViT_huge_fl(pretrained: bool = False, **kwargs) -> DaViT:
        # Florence-2-large's tower (DaViT-H layout), as timm's davit_huge_fl
        return _create_davit('DaViT_huge_fl', pretrained, **dict(arch='huge_fl', **kwargs))

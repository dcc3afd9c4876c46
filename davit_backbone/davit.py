"""DaViT: Dual Attention Vision Transformers (Ding et al., ECCV 2022), in plain PyTorch.

One implementation serves every task: the ImageNet classifier (``num_classes > 0``) and the dense-task backbone
(``num_classes == 0``: a tuple of NCHW maps at strides 4, 8, 16, 32, each behind its own LayerNorm, as the official
detection/segmentation backbone returns). mmpretrain, mmdet and mmseg adapt this module; none of them copies it.

Layout: the stem (7x7 conv, stride 4) and each downsample (LayerNorm, 2x2 conv, stride 2) change resolution; each stage
is a run of dual blocks, a dual block being a spatial (window) attention block followed by a channel (group)
attention block, and each sub-block is ``x += ConvPosEnc(x); x += Attn(LN(x)); x += ConvPosEnc(x); x += MLP(LN(x))``.

Why it looks the way it does:
- Tokens stay in a (B, H, W, C) tensor between layers. LayerNorm and Linear work on the last dim as is, and the
  depthwise convs of ConvPosEnc read the same memory as a channels_last NCHW view, so the block needs no transpose
  copies (the reference implementations flatten and transpose around every conv).
- Window attention goes through ``F.scaled_dot_product_attention``. Channel attention in the official code is
  ``softmax(scale * K^T V) Q^T``: SDPA with (query, key, value) = (K^T, V^T, Q^T) on small maps, and two strided bmm
  on (C, N) matrices on large ones (``ChannelAttention._forward_channel_major``).
- Linear layers use oneDNN's fused linear on CPU (``_linear``), and blocks write residual sums into buffers they own
  (``_add_residual``): on CPU every fresh full-size buffer costs its page faults again. tools/benchmark.py measures.
- Any input size works: the stem pads to a multiple of 4, downsampling to even sizes and window attention to the
  window size, all on the right/bottom (as the official code does), and results are cropped back.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

__all__ = ['DaViT', 'arch_zoo', 'IMAGENET_MEAN', 'IMAGENET_STD']

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
}
_ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'h': 'huge', 'g': 'giant'}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Returns the ``embed_dims/depths/num_heads`` dict for an arch name (or its first letter) or a custom dict."""
    if isinstance(arch, str):
        name = _ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in arch_zoo:
            raise ValueError(f'Unknown DaViT arch {arch!r}; choose one of {sorted(arch_zoo)} '
                             f'(or their first letters), or pass a dict with embed_dims, depths and num_heads.')
        return dict(arch_zoo[name])
    missing = {'embed_dims', 'depths', 'num_heads'} - set(arch)
    if missing:
        raise ValueError(f'A custom DaViT arch dict needs the keys {sorted(missing)}.')
    arch = dict(arch)
    if isinstance(arch['embed_dims'], int):  # mmpretrain style: one width, doubled per stage
        arch['embed_dims'] = tuple(arch['embed_dims'] * 2 ** i for i in range(len(arch['depths'])))
    if not len(arch['embed_dims']) == len(arch['depths']) == len(arch['num_heads']):
        raise ValueError(f'embed_dims, depths and num_heads must have one entry per stage, got {arch}.')
    return arch


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def _pad_hw(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) tensor on the bottom/right up to multiples of the given sizes."""
    H, W = x.shape[1:3]
    pad_b, pad_r = (-H) % multiple_h, (-W) % multiple_w
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    return x


def _conv_nhwc(conv: nn.Conv2d, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Applies an NCHW conv (with ``weight`` in place of its own, if given) to a (B, H, W, C) tensor, returning
    (B, H', W', C').

    The permuted view is channels_last in memory, and convs keep that format, so no copy is made either way.
    """
    x = x.permute(0, 3, 1, 2)
    x = conv(x) if weight is None else conv._conv_forward(x, weight, conv.bias)
    return x.permute(0, 2, 3, 1)


# Linear layers hold 87% of DaViT's FLOPs. On CPU, eager PyTorch sends fp32 Linear to MKL's sgemm after a separate pass
# that broadcasts the bias into a fresh output; oneDNN's linear (what inductor uses for CPU inference) adds the bias,
# and GELU when asked, inside the GEMM, and was 10-25% faster per GEMM on the machines we measured (tools/benchmark.py
# is the judge; set False to compare against plain F.linear). It has no autograd formula of its own, hence
# _OneDNNLinear for training.
USE_ONEDNN_LINEAR = hasattr(torch.ops.mkldnn, '_linear_pointwise') and torch.backends.mkldnn.is_available()


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   gelu: bool = False) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'gelu' if gelu else 'none', [],
                                              'none' if gelu else '')


class _OneDNNLinear(torch.autograd.Function):
    """F.linear with the oneDNN forward and the input gradient on oneDNN too (a linear by W^T); the weight gradient,
    a reduction over all tokens, stays with torch.mm. Saves what addmm's own backward saves (input and weight)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x: (M, K); 2-D so that the output is no view (blocks add into it in place)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad, weight.t().contiguous(), None)
        if ctx.needs_input_grad[1]:
            grad_w = grad.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def _linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)``, followed by exact (erf) GELU when asked."""
    if (USE_ONEDNN_LINEAR and x.device.type == 'cpu' and x.dtype == layer.weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()):
        if not torch.is_grad_enabled():
            return _onednn_linear(x, layer.weight, layer.bias, gelu)
        x = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias).view(*x.shape[:-1], -1)
    else:
        x = layer(x)
    if not gelu:
        return x
    # without autograd GELU may overwrite the Linear's output: the largest buffer of the block, allocated once
    return torch.ops.aten.gelu_(x) if not torch.is_grad_enabled() else F.gelu(x)


class Stem(nn.Module):
    """7x7 conv with stride 4 then LayerNorm: (B, 3, H, W) -> (B, ceil(H/4), ceil(W/4), C)."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        x = F.pad(x, (0, (-W) % 4, 0, (-H) % 4))  # as the official PatchEmbed: pad right/bottom to a multiple of 4
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """LayerNorm then 2x2 conv with stride 2: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C')."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_nhwc(self.conv, _pad_hw(self.norm(x), 2, 2))


class ConvPosEnc(nn.Module):
    """Convolutional position encoding: ``x + DWConv3x3(x)`` on (B, H, W, C).

    The residual is folded into the kernel (1 added at the centre tap of every channel), so the block is one conv: one
    pass over memory and one new buffer instead of two. Under autocast the conv runs in low precision and the identity
    tap would round the residual stream to it, so there the add stays separate, in the stream's dtype.
    """

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        identity = torch.zeros(dim, 1, kernel_size, kernel_size)
        identity[:, 0, kernel_size // 2, kernel_size // 2] = 1
        self.register_buffer('identity', identity, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            return x + _conv_nhwc(self.proj, x)
        return _conv_nhwc(self.proj, x, self.proj.weight + self.identity)


def _add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch`` where both are buffers the calling block made itself, so one may be overwritten.

    Without autograd the sum goes into ``x``; with it, into ``branch`` when that keeps the dtype and layout (the ops
    that make a branch, Linear, copies and DropPath's mul, do not need their output for backward). Either way one
    full-size buffer fewer is allocated, which on CPU also saves its page faults.
    """
    if not torch.is_grad_enabled():
        return x.add_(branch)
    if branch.dtype == x.dtype and branch.is_contiguous() and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch


class Mlp(nn.Module):
    """Linear, exact GELU, Linear; the GELU is applied by ``_linear`` (fused into fc1 where it can be)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(_linear(x, self.fc1, gelu=True), self.fc2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window: (B*nW, N, C) -> (B*nW, N, C), N = window_size**2."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = _linear(x, self.qkv).view(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale = head_dim ** -0.5, as the paper
        return _linear(x.transpose(1, 2).reshape(B, N, C), self.proj)


class ChannelAttention(nn.Module):
    """Channel group attention: each head attends over its channels, with all N tokens as the feature.

    (B, N, C) -> (B, N, C). The official formula is ``softmax(scale * K^T V) Q^T`` with ``scale = head_dim ** -0.5``,
    which is scaled-dot-product attention with query ``K^T``, key ``V^T`` and value ``Q^T``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        if N >= 4 * C:
            return self._forward_channel_major(x)
        # (3, B, heads, head_dim, N): the token axis is the feature axis of this attention
        qkv = _linear(x, self.qkv).view(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)
        x = F.scaled_dot_product_attention(k, v, q, scale=self.scale)  # (B, heads, head_dim, N)
        return _linear(x.permute(0, 3, 1, 2).reshape(B, N, C), self.proj)

    def _forward_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """The same attention computed on (C, N) matrices, for maps with many tokens per channel.

        SDPA needs (batch, head)-major copies of q, k, v and of its output, four passes over the largest tensors of
        the block. Computing ``qkv^T = W x^T`` instead, with W's rows regrouped head-major ([head][q|k|v][dim]),
        puts every (batch, head) pair at one stride, so both products are single strided bmm calls and the result
        comes out as the proj input, transposed: no copies. With few tokens per channel (late stages) the batch of
        broadcast weights costs more than the copies saved, hence the ``N >= 4 * C`` switch in ``forward``.
        """
        B, N, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        w = self.qkv.weight.view(3, h, d, C).transpose(0, 1).reshape(3 * C, C)
        if self.qkv.bias is None:
            qkv = torch.bmm(w.expand(B, 3 * C, C), x.transpose(1, 2))  # (B, 3C, N)
        else:
            b = self.qkv.bias.view(3, h, d).transpose(0, 1).reshape(3 * C, 1)
            qkv = torch.baddbmm(b, w.expand(B, 3 * C, C), x.transpose(1, 2))
        q, k, v = qkv.view(B * h, 3, d, N).unbind(1)  # each (B * heads, head_dim, N)
        attn = torch.bmm(k, v.transpose(1, 2)).mul_(self.scale).softmax(dim=-1)  # (B * heads, head_dim, head_dim)
        x = torch.bmm(attn, q).view(B, C, N)
        return torch.baddbmm(self.proj.bias, x.transpose(1, 2), self.proj.weight.t().expand(B, C, C))


class _SubBlock(nn.Module):
    """What both sub-blocks share, on (B, H, W, C): ``x += CPE(x); x += Attn(LN(x)); x += CPE(x); x += MLP(LN(x))``.
    Subclasses give the attention module and how its output joins the residual stream (``_add_attention``)."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.cpe1 = ConvPosEnc(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.cpe2 = ConvPosEnc(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def _add_attention(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Returns ``x + DropPath(Attn(y))``; y = norm1(x)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cpe1(x)  # a new buffer: the residual adds below may write into it
        x = self._add_attention(x, self.norm1(x))
        x = self.cpe2(x)
        return _add_residual(x, self.drop_path(self.mlp(self.norm2(x))))


class SpatialBlock(_SubBlock):
    """Window-attention sub-block: non-overlapping windows, bottom/right zero-padded."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_path: float = 0.):
        super().__init__(dim, WindowAttention(dim, num_heads, qkv_bias), mlp_ratio, drop_path)
        self.window_size = window_size

    def _add_attention(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B, H, W, C = y.shape
        ws = self.window_size
        # padded after the norm, as officially: padded tokens are zeros, not LayerNorm(0) = bias
        y = _pad_hw(y, ws, ws)
        Hp, Wp = y.shape[1:3]
        y = y.view(B, Hp // ws, ws, Wp // ws, ws, C).transpose(2, 3).reshape(-1, ws * ws, C)
        y = self.attn(y).view(B, Hp // ws, Wp // ws, ws, ws, C).transpose(2, 3)  # windows, back in image order
        if not torch.is_grad_enabled() and (Hp, Wp) == (H, W) and x.is_contiguous():
            # undo the partition while adding: one strided pass, no buffer
            x.view(B, H // ws, ws, W // ws, ws, C).add_(y)
            return x
        return _add_residual(x, self.drop_path(y.reshape(B, Hp, Wp, C)[:, :H, :W]))


class ChannelBlock(_SubBlock):
    """Channel-attention sub-block: global over all tokens, linear in their number."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path: float = 0.):
        super().__init__(dim, ChannelAttention(dim, num_heads, qkv_bias), mlp_ratio, drop_path)

    def _add_attention(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B, H, W, C = y.shape
        return _add_residual(x, self.drop_path(self.attn(y.reshape(B, H * W, C)).view(B, H, W, C)))


class DualBlock(nn.Module):
    """A spatial block then a channel block: the unit the paper's depths count."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Tuple[float, float]):
        super().__init__()
        self.spatial_block = SpatialBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, drop_paths[0])
        self.channel_block = ChannelBlock(dim, num_heads, mlp_ratio, qkv_bias, drop_paths[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_block(self.spatial_block(x))


class DaViTStage(nn.Module):
    """Optional downsample, then ``depth`` dual blocks. (B, H, W, C_in) -> (B, H', W', C)."""

    def __init__(self, in_dim: Optional[int], dim: int, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop_paths: Sequence[float], with_cp: bool = False):
        super().__init__()
        self.downsample = Downsample(in_dim, dim) if in_dim is not None else nn.Identity()
        self.blocks = nn.Sequential(*[
            DualBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, tuple(drop_paths[2 * i:2 * i + 2]))
            for i in range(depth)])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and torch.is_grad_enabled() and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class ClassifierHead(nn.Module):
    """Global average pool, LayerNorm, Linear: the official order (pool before norm)."""

    def __init__(self, dim: int, num_classes: int, drop_rate: float = 0.):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x.mean(dim=(1, 2)))  # x: (B, H, W, C)
        return x if pre_logits else self.fc(self.drop(x))


class DaViT(nn.Module):
    """DaViT backbone or classifier.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' | 'huge' | 'giant' (or 't', 's', ...) or a dict with
            ``embed_dims`` (4 ints, or one int doubled per stage), ``depths`` and ``num_heads``.
        in_chans: input channels.
        num_classes: > 0 builds the ImageNet classifier (pool, LayerNorm, Linear) and ``forward`` returns logits
            (B, num_classes); 0 builds the dense backbone whose ``forward`` returns a tuple of NCHW maps.
        out_indices: stages (0..3) whose maps the dense backbone returns; each gets its own LayerNorm ``norm{i}``.
        window_size: spatial attention window (7 in the paper).
        mlp_ratio, qkv_bias: as in the paper (4, True).
        drop_path_rate: stochastic depth, rising linearly over all sub-blocks (spatial and channel) as officially.
        drop_rate: dropout before the classifier's Linear.
        frozen_stages: -1 freezes nothing; 0 the stem; k >= 1 the stem and stages 0..k-1 with their output norms
            (mmdet's Swin/ResNet convention).
        norm_eval: keep BatchNorm layers (none in DaViT itself; kept for API parity with OpenMMLab backbones) in eval.
        with_cp: gradient checkpointing per dual block: less activation memory for ~30% more compute.

    Shapes, dense mode, input (B, 3, H, W): outputs[i] is (B, embed_dims[i], ceil(H / 2**(i+2)), ...) for i in
    out_indices (the ceil comes from padding each stride to fit).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_chans: int = 3,
                 num_classes: int = 0,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.1,
                 drop_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False):
        super().__init__()
        arch = resolve_arch(arch)
        self.arch = arch
        self.embed_dims = tuple(arch['embed_dims'])
        self.depths = tuple(arch['depths'])
        self.num_heads = tuple(arch['num_heads'])
        self.num_stages = len(self.depths)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.window_size = window_size
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        for d, h in zip(self.embed_dims, self.num_heads):
            if d % h:
                raise ValueError(f'embed dim {d} is not divisible by its {h} heads')

        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        out_indices = [i % self.num_stages for i in out_indices]  # -1 means the last stage, as in OpenMMLab
        if any(not 0 <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must lie in 0..{self.num_stages - 1}')
        self.is_classifier = num_classes > 0  # fixed at build; reset_classifier(0) keeps pooled pre-logits
        self.out_indices = () if self.is_classifier else tuple(out_indices)

        # linspace over every sub-block (2 per dual block), indexed 2 * block + (0 spatial | 1 channel)
        dpr = torch.linspace(0, drop_path_rate, 2 * sum(self.depths)).tolist()
        self.stem = Stem(in_chans, self.embed_dims[0])
        stages, offset = [], 0
        for i, depth in enumerate(self.depths):
            stages.append(DaViTStage(
                self.embed_dims[i - 1] if i > 0 else None, self.embed_dims[i], depth, self.num_heads[i],
                window_size, mlp_ratio, qkv_bias, dpr[offset:offset + 2 * depth], with_cp))
            offset += 2 * depth
        self.stages = nn.Sequential(*stages)

        if self.is_classifier:
            self.head = ClassifierHead(self.embed_dims[-1], num_classes, drop_rate)
        else:
            for i in self.out_indices:
                self.add_module(f'norm{i}', nn.LayerNorm(self.embed_dims[i]))

        self.apply(self._init_weights)
        self._freeze_stages()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # the official init: truncated normal for Linear weights, PyTorch defaults for convs and norms
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f'DaViT expects images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}')

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> last stage tokens (B, H/32, W/32, C) in channels-last layout."""
        self._check_input(x)
        return self.stages(self.stem(x))

    def forward_dense(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C_in, H, W) -> tuple of normalised NCHW maps for ``out_indices``."""
        self._check_input(x)
        x = self.stem(x)
        outs = []
        last = max(self.out_indices, default=-1)
        for i, stage in enumerate(self.stages):
            if i > last:  # later stages feed nothing that is returned
                break
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor):
        if self.is_classifier:
            return self.forward_head(self.forward_features(x))
        return self.forward_dense(x)

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
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's name for ``with_cp``."""
        self.with_cp = enable
        for stage in self.stages:
            stage.with_cp = enable

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """timm API: a new Linear for ``num_classes`` (0 -> Identity, the pooled pre-logits)."""
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self._init_weights(self.head.fc)

    @torch.jit.ignore
    def no_weight_decay_keywords(self):
        """Parameter name fragments exempt from weight decay (timm's optimizer factory reads this)."""
        return {'cpe', 'norm', 'bias'}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_out_shapes(arch: Union[str, dict], height: int, width: int) -> Tuple[Tuple[int, int, int], ...]:
    """(C, H, W) of each stage's output for an input of height x width, padding included."""
    dims = resolve_arch(arch)['embed_dims']
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    shapes = []
    for i, d in enumerate(dims):
        if i:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        shapes.append((d, h, w))
    return tuple(shapes)

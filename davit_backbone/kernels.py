"""CPU fast paths for DaViT's sub-blocks, each behind its own switch, on where it pays on the running CPU.

``davit.py`` is the model as the paper writes it. On CPU in fp32, eager, each sub-block hands itself to
``sub_block`` here instead, which computes the same thing faster (tests/davit_backbone/test_kernels.py proves the
outputs and gradients equal, train and eval, drop path on, for every path alone and all together;
``tools/benchmark.py`` measures the gain). The paths (``PATHS``):

- ``linear``: Linear layers hold 87% of DaViT's FLOPs. Eager fp32 Linear on CPU goes to MKL's sgemm after a separate
  pass that broadcasts the bias into a fresh output; oneDNN's linear (what inductor uses for CPU inference) adds the
  bias, and GELU when asked, inside the GEMM. It has no autograd formula, hence ``_OneDNNLinear`` for training.
- ``cpe``: ConvPosEnc's residual is folded into the depthwise kernel (1 added at the centre tap): one conv, one buffer.
- ``inplace``: residual sums are written into buffers the block made itself (on CPU every fresh full-size buffer
  costs its page faults again); without autograd GELU runs in place and window attention is un-partitioned while it
  is added.
- ``channel``: channel attention on large maps runs on (C, N) matrices with two strided bmm instead of SDPA's copies.

Which paths pay depends on the CPU: on AVX-512 all of them did; on an AVX2-only EPYC the oneDNN linear made the
model slower while the others still paid. The default (``MMDAVIT_FAST_PATHS=auto``) is therefore a rule on the
instruction set torch dispatches to (``default_paths``). ``MMDAVIT_FAST_PATHS=0|1|auto|<comma list of paths>``,
``set_enabled()`` and ``disabled()`` force either way.

Nothing here runs under autocast, torch.compile, torch.jit or torch.fx, on other devices or dtypes: those take the
plain forward, which is also what tracers and compilers should see.
"""
from __future__ import annotations

import contextlib
import os
import platform
from typing import FrozenSet, Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .padding import _pad_hw, _window_size

__all__ = ['PATHS', 'ENV_VAR', 'set_enabled', 'disabled', 'forced', 'active_paths', 'default_paths', 'cpu_model',
           'applies', 'sub_block']

PATHS = ('linear', 'cpe', 'inplace', 'channel')
ENV_VAR = 'MMDAVIT_FAST_PATHS'

_forced: Optional[FrozenSet[str]] = None  # set_enabled() / disabled(); None: the environment variable decides
_auto: Optional[FrozenSet[str]] = None  # default_paths(), once known
_ON: FrozenSet[str] = frozenset()  # the paths of the sub-block running now (set by applies)
_OFF = frozenset()
_ALL = frozenset(PATHS)


def _available() -> FrozenSet[str]:
    if hasattr(torch.ops.mkldnn, '_linear_pointwise') and torch.backends.mkldnn.is_available():
        return _ALL
    return _ALL - {'linear'}


def _parse(value: Union[bool, str, Iterable[str]], what: str) -> Optional[FrozenSet[str]]:
    """A path set from a switch value: True/'1' all, False/'0' none, 'auto' None (the rule), or path names."""
    if isinstance(value, bool):
        return _available() if value else _OFF
    given = value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ('1', 'on', 'true', 'all'):
            return _available()
        if v in ('0', 'off', 'false', 'none', ''):
            return _OFF
        if v == 'auto':
            return None
        value = [p.strip() for p in v.split(',') if p.strip()]
    names = frozenset(value)
    if not names <= _ALL:
        raise ValueError(f'{what} must be 0, 1, auto or a comma list of {", ".join(PATHS)}; got {given!r}')
    return names & _available()


def set_enabled(flag: Union[bool, str, Iterable[str], None]) -> None:
    """Forces the fast paths for every DaViT in the process: True all, False none (the plain forward everywhere),
    path names (e.g. ``{'cpe', 'channel'}``) those only; None or 'auto' goes back to the environment variable."""
    global _forced
    _forced = None if flag is None else _parse(flag, 'set_enabled')


@contextlib.contextmanager
def forced(flag: Union[bool, str, Iterable[str]]):
    """``with kernels.forced({'channel'}):`` runs those paths only (as ``set_enabled``) for a block of code."""
    global _forced
    before = _forced
    set_enabled(flag)
    try:
        yield
    finally:
        _forced = before


def disabled():
    """``with kernels.disabled():`` runs the plain forward, e.g. to compare against it or to count FLOPs."""
    return forced(False)


def active_paths() -> FrozenSet[str]:
    """The paths a forward would take now: forced ones, else the environment variable's, else ``default_paths()``
    for this CPU."""
    if _forced is not None:
        return _forced
    paths = _parse(os.environ.get(ENV_VAR, 'auto'), ENV_VAR)
    if paths is not None:
        return paths
    global _auto
    if _auto is None:  # asked once, at the first eligible forward, not at import
        _auto = default_paths()
    return _auto


def __getattr__(name):
    if name == 'ENABLED':  # the old single switch, read-only: whether any path is on
        return bool(active_paths())
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def applies(block: nn.Module, x) -> bool:
    """Whether ``sub_block`` may stand in for the block's plain forward on ``x``."""
    global _ON
    if not (isinstance(x, torch.Tensor)  # an fx Proxy is no Tensor
            and x.device.type == 'cpu' and x.dtype == torch.float32 and block.norm1.weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()):
        return False
    _ON = active_paths()
    return bool(_ON)


# ------------------------------------------------------------------------------------------ oneDNN linear
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
    if 'linear' not in _ON:
        x = F.linear(x, layer.weight, layer.bias)
        if not gelu:
            return x
        # the Linear's output is the block's largest buffer and nothing needs it after GELU without autograd
        return torch.ops.aten.gelu_(x) if 'inplace' in _ON and not torch.is_grad_enabled() else F.gelu(x)
    if not torch.is_grad_enabled():
        # without autograd the fused GELU may overwrite the Linear's output: the block's largest buffer, made once
        return _onednn_linear(x, layer.weight, layer.bias, gelu)
    x = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias).view(*x.shape[:-1], -1)
    return F.gelu(x) if gelu else x


# ------------------------------------------------------------------------------------------------ pieces
def _drops(block: nn.Module) -> bool:
    """Whether the block's DropPath changes its input now (training with a rate > 0)."""
    return block.training and getattr(block.drop_path, 'drop_prob', 0.) > 0.


def _add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch`` where both are buffers the calling block made itself, so one may be overwritten.

    Without autograd the sum goes into ``x``; with it, into ``branch`` when that keeps the dtype and layout (the ops
    that make a branch, Linear, copies and DropPath's mul, do not need their output for backward).
    """
    if 'inplace' not in _ON:
        return x + branch
    if not torch.is_grad_enabled():
        return x.add_(branch)
    if branch.dtype == x.dtype and branch.is_contiguous() and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch


def _conv_pos_enc(cpe: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + DWConv(x)`` as one conv whose kernel has 1 added at the centre tap; a new buffer either way."""
    if 'cpe' not in _ON:
        return cpe(x)
    conv = cpe.proj
    k = conv.kernel_size[0] // 2
    weight = conv.weight.clone()
    weight[:, 0, k, k] += 1
    return conv._conv_forward(x.permute(0, 3, 1, 2), weight, conv.bias).permute(0, 2, 3, 1)


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _linear(_linear(x, mlp.fc1, gelu=True), mlp.fc2)


def _window_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, N, C = x.shape
    q, k, v = _linear(x, attn.qkv).view(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    x = F.scaled_dot_product_attention(q, k, v)
    return _linear(x.transpose(1, 2).reshape(B, N, C), attn.proj)


def _channel_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, N, C = x.shape
    if N < 4 * C or 'channel' not in _ON:
        q, k, v = _linear(x, attn.qkv).view(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 4, 1)\
            .unbind(0)
        # the query scaled and SDPA's scale 1, as the plain forward (mmdeploy's SDPA rewrite, which also replaces
        # eager calls inside its rewriter context, divides by ``scale``)
        if attn.v2:  # Florence-2: softmax(Q^T K / sqrt(N)) V^T, N the real token count as in the plain forward
            x = F.scaled_dot_product_attention(q * N ** -0.5, k, v, scale=1.0)  # (B, heads, head_dim, N)
        else:
            x = F.scaled_dot_product_attention(k * attn.scale, v, q, scale=1.0)
        return _linear(x.permute(0, 3, 1, 2).reshape(B, N, C), attn.proj)
    # Many tokens per channel: SDPA needs (batch, head)-major copies of q, k, v and of its output, four passes over
    # the block's largest tensors. Computing qkv^T = W x^T with W's rows regrouped head-major ([head][q|k|v][dim])
    # puts every (batch, head) pair at one stride, so both products are single strided bmm calls and the result
    # comes out as the proj input, transposed: no copies. With few tokens per channel (late stages) the batch of
    # broadcast weights costs more than the copies saved, hence the N >= 4C switch.
    h, d = attn.num_heads, C // attn.num_heads
    w = attn.qkv.weight.view(3, h, d, C).transpose(0, 1).reshape(3 * C, C)
    if attn.qkv.bias is None:
        qkv = torch.bmm(w.expand(B, 3 * C, C), x.transpose(1, 2))  # (B, 3C, N)
    else:
        b = attn.qkv.bias.view(3, h, d).transpose(0, 1).reshape(3 * C, 1)
        qkv = torch.baddbmm(b, w.expand(B, 3 * C, C), x.transpose(1, 2))
    q, k, v = qkv.view(B * h, 3, d, N).unbind(1)  # each (B * heads, head_dim, N)
    # v1: softmax(scale K V^T) Q; v2 (Florence-2): softmax(N ** -0.5 Q K^T) V, the same two products
    query, key, value = (q, k, v) if attn.v2 else (k, v, q)
    scale = N ** -0.5 if attn.v2 else attn.scale
    weights = torch.bmm(query, key.transpose(1, 2)).mul_(scale).softmax(dim=-1)  # (B * heads, head_dim, head_dim)
    x = torch.bmm(weights, value).view(B, C, N)
    return torch.baddbmm(attn.proj.bias, x.transpose(1, 2), attn.proj.weight.t().expand(B, C, C))


def _spatial_attention_residual(block: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    B, H, W, C = y.shape
    ws = _window_size(H, W, block.window_size, block.pad_small_map)
    y = _pad_hw(y, ws, ws)
    Hp, Wp = y.shape[1:3]
    y = y.view(B, Hp // ws, ws, Wp // ws, ws, C).transpose(2, 3).reshape(-1, ws * ws, C)
    y = _window_attention(block.attn, y).view(B, Hp // ws, Wp // ws, ws, ws, C).transpose(2, 3)
    if ('inplace' in _ON and not torch.is_grad_enabled() and (Hp, Wp) == (H, W) and x.is_contiguous()
            and not _drops(block)):
        x.view(B, H // ws, ws, W // ws, ws, C).add_(y)  # undo the partition while adding: one strided pass
        return x
    return _add_residual(x, block.drop_path(y.reshape(B, Hp, Wp, C)[:, :H, :W]))


def _channel_attention_residual(block: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    B, H, W, C = y.shape
    return _add_residual(x, block.drop_path(_channel_attention(block.attn, y.reshape(B, H * W, C)).view(B, H, W, C)))


def sub_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The fast equivalent of ``_SubBlock.forward`` (spatial or channel) on a (B, H, W, C) fp32 CPU tensor."""
    x = _conv_pos_enc(block.cpe1, x)  # a new buffer: the residual adds below may write into it
    y = block.norm1(x)
    if hasattr(block, 'window_size'):
        x = _spatial_attention_residual(block, x, y)
    else:
        x = _channel_attention_residual(block, x, y)
    x = _conv_pos_enc(block.cpe2, x)
    return _add_residual(x, block.drop_path(_mlp(block.mlp, block.norm2(x))))


# ---------------------------------------------------------------------------------------------- the rule
def cpu_model() -> str:
    """/proc/cpuinfo's 'model name' (what the CPU calls itself), else what platform knows."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_paths(capability: Optional[str] = None) -> FrozenSet[str]:
    """The paths ``auto`` takes: all of them where torch dispatches to AVX-512 (or later); elsewhere all but the
    oneDNN linear.

    A rule, not a measurement: on the AVX2-only EPYC (2 vCPUs shared with other jobs) a sub-block timed at first use
    took 20 to 540 ms for the same configuration from one run to the next, so a few hundred ms of timing chose a
    different set each time, and a cached wrong choice would stay. The rule is what whole-model runs measured on
    both classes (docs/performance.md): on AVX-512 every path paid (1.19x timm), on AVX2 oneDNN's fp32 GEMM with its
    fused bias/GELU lost to MKL's sgemm in the model (all paths 6.01 img/s, all but linear 6.80, one thread) while
    the folded residual, the in-place sums and the (C, N) channel attention gained."""
    capability = capability or torch.backends.cpu.get_cpu_capability()
    paths = _available()
    return paths if capability.upper().startswith(('AVX512', 'AMX')) else paths - {'linear'}

"""CPU fast paths for DaViT's sub-blocks, behind one switch (``ENABLED`` / ``set_enabled`` / ``disabled()``).

``davit.py`` is the model as the paper writes it. On CPU in fp32, eager, each sub-block hands itself to
``sub_block`` here instead, which computes the same thing faster (tests/davit_backbone/test_kernels.py proves the
outputs and gradients equal, train and eval, drop path on; ``tools/benchmark.py`` measures the gain):

- Linear layers hold 87% of DaViT's FLOPs. Eager fp32 Linear on CPU goes to MKL's sgemm after a separate pass that
  broadcasts the bias into a fresh output; oneDNN's linear (what inductor uses for CPU inference) adds the bias, and
  GELU when asked, inside the GEMM: 10-25% faster per GEMM on the machines we measured. It has no autograd formula,
  hence ``_OneDNNLinear`` for training.
- ConvPosEnc's residual is folded into the depthwise kernel (1 added at the centre tap): one conv, one buffer.
- Residual sums are written into buffers the block made itself (on CPU every fresh full-size buffer costs its page
  faults again); without autograd GELU runs in place and window attention is un-partitioned while it is added.
- Channel attention on large maps runs on (C, N) matrices with two strided bmm instead of SDPA's copies.

Nothing here runs under autocast, torch.compile, torch.jit or torch.fx, on other devices or dtypes: those take the
plain forward, which is also what tracers and compilers should see.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .padding import _pad_hw, _window_size

__all__ = ['ENABLED', 'set_enabled', 'disabled', 'applies', 'sub_block']

ENABLED = hasattr(torch.ops.mkldnn, '_linear_pointwise') and torch.backends.mkldnn.is_available()


def set_enabled(flag: bool) -> None:
    """Turns the fast paths on or off for every DaViT in the process (off: the plain forward everywhere)."""
    global ENABLED
    ENABLED = bool(flag)


@contextlib.contextmanager
def disabled():
    """``with kernels.disabled():`` runs the plain forward, e.g. to compare against it or to count FLOPs."""
    global ENABLED
    before, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = before


def applies(block: nn.Module, x) -> bool:
    """Whether ``sub_block`` may stand in for the block's plain forward on ``x``."""
    return (ENABLED and isinstance(x, torch.Tensor)  # an fx Proxy is no Tensor
            and x.device.type == 'cpu' and x.dtype == torch.float32 and block.norm1.weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing())


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
    if not torch.is_grad_enabled():
        return x.add_(branch)
    if branch.dtype == x.dtype and branch.is_contiguous() and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch


def _conv_pos_enc(cpe: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + DWConv(x)`` as one conv whose kernel has 1 added at the centre tap; a new buffer either way."""
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
    if N < 4 * C:
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
    if not torch.is_grad_enabled() and (Hp, Wp) == (H, W) and x.is_contiguous() and not _drops(block):
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

"""The CPU fast paths (davit_backbone/kernels.py) compute what the plain forward computes: outputs and gradients,
train and eval, drop path on, padded sizes included, each path alone and all together (the auto choice may pick any
subset). The switches, the environment variable and the auto rule.
tools/benchmark.py measures what the paths gain."""
import pytest
import torch

from davit_backbone import DaViT, kernels
from helpers import dense_davit, randomize_norms


@pytest.fixture(autouse=True)
def all_paths():
    """Every test here starts with all paths forced on: what a test runs must not depend on this machine's choice."""
    with kernels.forced(True):
        yield


def _run(model, x, grad, seed=0):
    """Output (and parameter gradients when ``grad``) of one forward, with a fixed seed for DropPath's masks."""
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grad):
        out = model.forward_dense(x) if not model.with_head else (model(x),)
        if grad:
            sum(o.square().mean() for o in out).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in out], grads


# all paths over every combination they distinguish; each path alone (what the switches can choose; 'inplace'
# without 'linear' runs its own in-place GELU) over the combinations that path distinguishes: autograd or not for the
# linear, the fused window add (unpadded, no drop) and GELU for the in-place sums, 112x112 for the (C, N) route
_CASES = [('all', training, grad, hw) for training in (False, True) for grad in (False, True)
          for hw in ((112, 112), (61, 83))]
_CASES += [('linear', True, False, (61, 83)), ('linear', True, True, (61, 83)), ('inplace', False, False, (112, 112)),
           ('inplace', True, False, (61, 83)), ('inplace', True, True, (61, 83)), ('cpe', True, True, (61, 83)),
           ('channel', True, True, (112, 112))]


@pytest.mark.parametrize('paths,training,grad,hw', _CASES)  # hw: stages 0-2 unpadded (the fused window add); padded
def test_fast_path_equals_plain_path(seed, paths, training, grad, hw):
    """Every combination the fast paths distinguish (autograd or not: in-place sums, fused GELU, the window
    reversal fused with the residual add; train mode: DropPath with rate 0.3 under the same seed) gives the plain
    forward's maps and gradients. No fast path may change what the model computes, e.g. skip stochastic depth in a
    train-mode model run under no_grad (EMA/teacher updates do that)."""
    # a single path runs on a narrow, one-block-per-stage DaViT: the same code at a fraction of the suite's time
    arch = 'tiny' if paths == 'all' else dict(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
    m = randomize_norms(dense_davit(arch, drop_path_rate=0.3)).train(training)
    x = torch.randn(2, 3, *hw)
    kernels.set_enabled(True if paths == 'all' else {paths})
    assert kernels.active_paths() == (set(kernels.PATHS) if paths == 'all' else {paths})
    fast, fast_grads = _run(m, x, grad)
    with kernels.disabled():
        plain, plain_grads = _run(m, x, grad)
    for a, b in zip(fast, plain):  # randomised norms and 1/keep scaling: fp32 noise ~1e-5; a skipped branch is O(1)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert set(fast_grads) == set(plain_grads)
    for n, g in plain_grads.items():
        assert torch.allclose(fast_grads[n], g, atol=1e-6, rtol=1e-3), n
    if training:  # the seed matters: drop path really is active on both paths
        other, _ = _run(m, x, grad, seed=1)
        assert any((a - b).abs().max() > 1e-3 for a, b in zip(other, fast))


def test_classifier_fast_path_equals_plain_path(seed):
    m = DaViT('tiny', num_classes=10, drop_path_rate=0.0).eval()
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        fast = m(x)
        with kernels.disabled():
            plain = m(x)
    assert (fast - plain).abs().max() < 1e-5


def test_fast_path_stays_out_of_autocast_and_other_dtypes(seed, monkeypatch):
    """Under autocast and in bf16 the plain forward runs (the fused kernels are fp32 only): proven by making the
    fast path fail if it is called."""
    m = DaViT('tiny', num_classes=10).eval()
    monkeypatch.setattr(kernels, 'sub_block', lambda *a: (_ for _ in ()).throw(AssertionError('fast path ran')))
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert m(torch.randn(1, 3, 64, 64)).dtype == torch.bfloat16
    with torch.no_grad():
        assert m.to(torch.bfloat16)(torch.randn(1, 3, 64, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def _official_channel_attention(attn, x):
    """The official formula, spelled out: softmax(scale * K^T V) Q^T per head, on (B, heads, N, head_dim)."""
    B, N, C = x.shape
    q, k, v = attn.qkv(x).view(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = ((k * attn.scale).transpose(-1, -2) @ v).softmax(-1) @ q.transpose(-1, -2)  # (B, heads, head_dim, N)
    return attn.proj(out.permute(0, 3, 1, 2).reshape(B, N, C))


@pytest.mark.parametrize('tokens', [400, 40])  # N >= 4C: the channel-major route; N < 4C: SDPA
def test_channel_attention_routes_match_the_official_formula(seed, tokens, monkeypatch):
    from davit_backbone.davit import ChannelAttention
    attn = ChannelAttention(96, 3)
    x = torch.randn(2, tokens, 96, requires_grad=True)
    ref = _official_channel_attention(attn, x)
    monkeypatch.setattr(kernels, '_ON', frozenset(kernels.PATHS))  # what applies() sets for a sub-block
    for out in (attn(x), kernels._channel_attention(attn, x)):
        assert (out - ref).abs().max() < 1e-5
        g, = torch.autograd.grad(out.square().sum(), x)
        gr, = torch.autograd.grad(ref.square().sum(), x, retain_graph=True)
        assert torch.allclose(g, gr, atol=1e-5, rtol=1e-4)


def test_conv_pos_enc_fold_equals_the_residual_conv(seed, monkeypatch):
    from davit_backbone.davit import ConvPosEnc
    cpe = ConvPosEnc(8)
    x = torch.randn(2, 5, 7, 8)
    monkeypatch.setattr(kernels, '_ON', frozenset({'cpe'}))
    assert (kernels._conv_pos_enc(cpe, x) - cpe(x)).abs().max() < 1e-6
    assert set(cpe.state_dict()) == {'proj.weight', 'proj.bias'}  # checkpoints keep the official keys only


def test_torch_compile_traces_without_graph_breaks(seed):
    """torch._dynamo traces the whole model as one graph (the plain path), inference and training, with_cp too."""
    x = torch.randn(1, 3, 97, 131)
    for mode, with_cp in (('eval', False), ('train', False), ('train', True)):
        torch._dynamo.reset()
        m = dense_davit(with_cp=with_cp)
        m.train(mode == 'train')
        with torch.set_grad_enabled(mode == 'train'):
            explained = torch._dynamo.explain(m.forward_dense)(x)
        assert explained.graph_break_count == 0, (mode, with_cp, explained.break_reasons)
        assert explained.graph_count == 1


def test_switches_and_environment_variable(monkeypatch):
    """set_enabled/forced win over MMDAVIT_FAST_PATHS, which wins over the rule; a bad value is one line."""
    monkeypatch.setattr(kernels, 'default_paths', lambda *a: pytest.fail('the rule ran although the mode was set'))
    monkeypatch.setattr(kernels, '_auto', None)
    kernels.set_enabled(None)  # back to the environment variable
    for value, expected in (('0', set()), ('1', set(kernels.PATHS)), ('cpe, channel', {'cpe', 'channel'})):
        monkeypatch.setenv(kernels.ENV_VAR, value)
        assert kernels.active_paths() == expected and kernels.ENABLED == bool(expected)
    with kernels.forced({'linear'}):
        assert kernels.active_paths() == {'linear'}
        with kernels.disabled():
            assert kernels.active_paths() == set() and not kernels.ENABLED
        assert kernels.active_paths() == {'linear'}
    assert kernels.active_paths() == {'cpe', 'channel'}
    monkeypatch.setenv(kernels.ENV_VAR, 'fast')
    with pytest.raises(ValueError, match=r'^MMDAVIT_FAST_PATHS must be 0, 1, auto or a comma list of linear, cpe, '
                                         r"inplace, channel; got 'fast'$"):
        kernels.active_paths()
    with pytest.raises(ValueError, match="got {'gemm'}"):
        kernels.set_enabled({'gemm'})


def test_plain_forward_when_every_path_is_off(seed, monkeypatch):
    m = DaViT('tiny', num_classes=10).eval()
    monkeypatch.setattr(kernels, 'sub_block', lambda *a: pytest.fail('fast path ran'))
    with kernels.disabled(), torch.no_grad():
        m(torch.randn(1, 3, 64, 64))


def test_auto_rule_by_instruction_set(monkeypatch):
    """auto: every path where torch dispatches to AVX-512 or AMX, all but the oneDNN linear elsewhere (it made the
    model slower on AVX2); decided at the first eligible forward, not at import."""
    assert kernels.default_paths('AVX512') == set(kernels.PATHS)
    assert kernels.default_paths('AVX2') == kernels.default_paths('DEFAULT') == {'cpe', 'inplace', 'channel'}
    monkeypatch.setenv(kernels.ENV_VAR, 'auto')
    monkeypatch.setattr(kernels, '_auto', None)
    kernels.set_enabled(None)
    assert kernels.active_paths() == kernels.default_paths(torch.backends.cpu.get_cpu_capability())

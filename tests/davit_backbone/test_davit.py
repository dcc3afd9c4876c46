import pytest
import torch

from davit_backbone import DaViT, count_params, expected_out_shapes


@pytest.mark.parametrize('arch,params_m', [('tiny', 28.3), ('small', 49.7), ('base', 87.9)])
def test_param_counts_match_paper(arch, params_m):
    n = count_params(DaViT(arch, num_classes=1000)) / 1e6
    assert params_m <= n < params_m + 0.1, n  # the paper truncates to one decimal


def test_arch_aliases_and_custom_dict():
    assert count_params(DaViT('t')) == count_params(DaViT('tiny'))
    m = DaViT(dict(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))
    assert m.embed_dims == (32, 64, 128, 256)
    with pytest.raises(ValueError, match='Unknown DaViT arch'):
        DaViT('medium')


@pytest.mark.parametrize('hw', [(224, 224), (97, 131), (33, 65), (7, 7), (800, 68)])
def test_any_input_size_gives_padded_shapes(seed, hw):
    m = DaViT('tiny').eval()
    with torch.no_grad():
        outs = m(torch.randn(1, 3, *hw))
    assert tuple(tuple(o.shape[1:]) for o in outs) == expected_out_shapes('tiny', *hw)
    assert all(torch.isfinite(o).all() for o in outs)


def test_window_padding_does_not_leak_into_the_image_region(seed):
    """A spatial block on 50x50 tokens pads to 56x56 with zeros; windows wholly inside the image (and away from the
    depthwise conv's reach of the border) must equal those of the same block on a larger, unpadded input.
    (Channel attention is global, so only the spatial block can be checked this way.)"""
    from davit_backbone.davit import SpatialBlock
    blk = SpatialBlock(dim=32, num_heads=2, window_size=7).eval()
    x = torch.randn(1, 56, 56, 32)
    with torch.no_grad():
        full = blk(x)
        part = blk(x[:, :50, :50])
    assert part.shape == (1, 50, 50, 32)
    assert torch.allclose(full[:, :42, :42], part[:, :42, :42], atol=1e-5)
    assert not torch.allclose(full[:, 42:50, 42:50], part[:, 42:50, 42:50], atol=1e-5)  # the padded windows differ


def test_out_indices_and_classifier(seed):
    m = DaViT('tiny', out_indices=(1, 3)).eval()
    outs = m(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [192, 768]
    assert not hasattr(m, 'norm0') and hasattr(m, 'norm3')
    clf = DaViT('tiny', num_classes=10).eval()
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    clf.reset_classifier(0)
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 768)


def test_bad_input_is_a_clear_error():
    m = DaViT('tiny')
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        m(torch.randn(3, 224, 224))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        m(torch.randn(1, 1, 224, 224))


def test_with_cp_same_output_and_gradients(seed):
    x = torch.randn(2, 3, 96, 96)
    ref = DaViT('tiny', drop_path_rate=0.0)
    cp = DaViT('tiny', drop_path_rate=0.0, with_cp=True)
    cp.load_state_dict(ref.state_dict())
    outs = [sum(o.square().mean() for o in m(x)) for m in (ref, cp)]
    for loss in outs:
        loss.backward()
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for (n, p), (_, q) in zip(ref.named_parameters(), cp.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages_have_no_grad(seed, frozen):
    m = DaViT('tiny', frozen_stages=frozen).train()
    sum(o.mean() for o in m(torch.randn(1, 3, 64, 64))).backward()
    frozen_mods = [m.stem] + [m.stages[i] for i in range(frozen)] + [getattr(m, f'norm{i}') for i in range(frozen)]
    for mod in frozen_mods:
        assert not mod.training
        assert all(not p.requires_grad and p.grad is None for p in mod.parameters())
    live = [m.stages[i] for i in range(frozen, 4)]
    assert all(p.grad is not None for mod in live for p in mod.parameters())
    m.train()  # train() must not unfreeze
    assert not m.stem.training


def test_drop_path_schedule_matches_official():
    m = DaViT('tiny', drop_path_rate=0.3)
    rates = []
    for stage in m.stages:
        for blk in stage.blocks:
            for sub in (blk.spatial_block, blk.channel_block):
                rates.append(getattr(sub.drop_path, 'drop_prob', 0.0))
    expected = torch.linspace(0, 0.3, 12).tolist()
    assert rates == pytest.approx(expected)


def test_drop_path_is_stochastic_only_in_training(seed):
    m = DaViT('tiny', num_classes=5, drop_path_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


# ------------------------------------------------------------------ the fast paths (see tools/benchmark.py)
def _loss(out):
    return sum(o.square().mean() for o in out) if isinstance(out, (tuple, list)) else out.square().mean()


@pytest.mark.parametrize('hw', [(224, 224), (97, 131)])
def test_inference_path_matches_autograd_path(seed, hw):
    """Without autograd the blocks add in place, fuse GELU and undo window partitions while adding; with it they
    don't. Both must give the same maps, padded sizes included."""
    from helpers import randomize_norms
    m = randomize_norms(DaViT('tiny', drop_path_rate=0.0)).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        fast = m(x)
    slow = m(x)
    assert slow[0].requires_grad
    for a, b in zip(fast, slow):
        assert (a - b.detach()).abs().max() < 1e-5


def test_onednn_linear_same_outputs_and_gradients(seed, monkeypatch):
    import davit_backbone.davit as davit_module
    m = DaViT('tiny', num_classes=10, drop_path_rate=0.0)
    x = torch.randn(2, 3, 97, 131)
    results = []
    for flag in (True, False):
        monkeypatch.setattr(davit_module, 'USE_ONEDNN_LINEAR', flag)
        m.zero_grad()
        out = m(x)
        _loss(out).backward()
        with torch.no_grad():
            eval_out = m(x)
        results.append((out.detach(), eval_out, {n: p.grad.clone() for n, p in m.named_parameters()}))
    (o1, e1, g1), (o0, e0, g0) = results
    assert (o1 - o0).abs().max() < 1e-5 and (e1 - e0).abs().max() < 1e-5
    for n in g0:
        assert torch.allclose(g1[n], g0[n], atol=1e-6, rtol=1e-3), n


def _official_channel_attention(attn, x):
    """The official formula, spelled out: softmax(scale * K^T V) Q^T per head, on (B, heads, N, head_dim)."""
    B, N, C = x.shape
    q, k, v = attn.qkv(x).view(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = ((k * attn.scale).transpose(-1, -2) @ v).softmax(-1) @ q.transpose(-1, -2)  # (B, heads, head_dim, N)
    return attn.proj(out.permute(0, 3, 1, 2).reshape(B, N, C))


@pytest.mark.parametrize('tokens', [400, 40])  # N >= 4C: the channel-major route; N < 4C: SDPA
def test_channel_attention_routes_match_the_official_formula(seed, tokens):
    from davit_backbone.davit import ChannelAttention
    attn = ChannelAttention(96, 3)
    x = torch.randn(2, tokens, 96, requires_grad=True)
    a, ref = attn(x), _official_channel_attention(attn, x)
    assert (a - ref).abs().max() < 1e-5
    ga, = torch.autograd.grad(a.square().sum(), x)
    gr, = torch.autograd.grad(ref.square().sum(), x)
    assert torch.allclose(ga, gr, atol=1e-5, rtol=1e-4)


def test_conv_pos_enc_folds_the_residual_into_the_kernel(seed):
    from davit_backbone.davit import ConvPosEnc
    cpe = ConvPosEnc(8)
    x = torch.randn(2, 5, 7, 8)
    ref = x + cpe.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert (cpe(x) - ref).abs().max() < 1e-6
    assert 'identity' not in cpe.state_dict()  # checkpoints keep the official keys only
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = cpe(x)
    assert low.dtype == torch.float32  # under autocast the residual stream keeps its own precision


def test_torch_compile_traces_without_graph_breaks(seed):
    """torch._dynamo traces the whole backbone as one graph, inference and training, with_cp included."""
    x = torch.randn(1, 3, 97, 131)
    for mode, with_cp in (('eval', False), ('train', False), ('train', True)):
        torch._dynamo.reset()
        m = DaViT('tiny', with_cp=with_cp)
        m.train(mode == 'train')
        with torch.set_grad_enabled(mode == 'train'):
            explained = torch._dynamo.explain(m)(x)
        assert explained.graph_break_count == 0, (mode, with_cp, explained.break_reasons)
        assert explained.graph_count == 1

import pytest
import torch

from davit_backbone import DaViT
from helpers import count_params, dense_davit, expected_out_shapes


@pytest.mark.parametrize('arch,params_m', [('tiny', 28.3), ('small', 49.7), ('base', 87.9)])
def test_param_counts_match_paper(arch, params_m):
    n = count_params(DaViT(arch)) / 1e6
    assert params_m <= n < params_m + 0.1, n  # the paper truncates to one decimal


def test_arch_aliases_and_custom_dict():
    assert count_params(DaViT('t')) == count_params(DaViT('tiny'))
    m = DaViT(dict(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))
    assert m.embed_dims == (32, 64, 128, 256)
    with pytest.raises(ValueError, match='Unknown DaViT arch'):
        DaViT('medium')


@pytest.mark.parametrize('hw', [(224, 224), (97, 131), (33, 65), (7, 7), (800, 68)])
def test_any_input_size_gives_padded_shapes(seed, hw):
    m = dense_davit().eval()
    with torch.no_grad():
        outs = m.forward_dense(torch.randn(1, 3, *hw))
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
    m = DaViT('tiny', with_head=False, out_indices=(1, -1)).eval()
    outs = m.forward_dense(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [192, 768] and m.out_indices == (1, 3)
    assert not hasattr(m, 'norm0') and hasattr(m, 'norm3') and not hasattr(m, 'head')
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 768, 2, 2)  # no head: the last stage's map
    clf = DaViT('tiny', num_classes=10).eval()
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    clf.reset_classifier(0)
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 768)
    with pytest.raises(ValueError, match='out_indices'):
        DaViT('tiny', out_indices=(4,))


def test_out_after_downsample_takes_the_next_stage_map(seed):
    """mmpretrain's option: stage i is returned after the next stage's downsample, and that stage does not
    downsample again: the last map equals the plain stack's."""
    m = DaViT('tiny', with_head=False, out_indices=(0, 3), out_after_downsample=True).eval()
    plain = DaViT('tiny', with_head=False, out_indices=(3,)).eval()
    plain.load_state_dict(m.state_dict(), strict=False)  # m's norm0 (192 wide) has no place in plain: dropped
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, d = m.forward_dense(x)
        tokens = m.stages[1].downsample(m.stages[0](m.stem(x)))
        ref_d, = plain.forward_dense(x)
    assert a.shape == (1, 192, 8, 12) and torch.allclose(a, m.norm0(tokens).permute(0, 3, 1, 2), atol=1e-5)
    assert torch.allclose(d, ref_d, atol=1e-5)


def test_pad_small_map_false_shrinks_the_window(seed):
    """mmpretrain's default: a 4x4 map attends over its 16 tokens instead of a zero-padded 7x7 window."""
    from davit_backbone.davit import SpatialBlock
    padded = SpatialBlock(32, 2, window_size=7).eval()
    shrunk = SpatialBlock(32, 2, window_size=7, pad_small_map=False).eval()
    shrunk.load_state_dict(padded.state_dict())
    x = torch.randn(1, 4, 4, 32)
    big = torch.nn.functional.pad(x, (0, 0, 0, 3, 0, 3))
    with torch.no_grad():
        assert not torch.allclose(padded.attend(x), shrunk.attend(x), atol=1e-4)
        # the shrunk window equals attention over exactly those 16 tokens
        ref = shrunk.attn(x.reshape(1, 16, 32)).view(1, 4, 4, 32)
        assert torch.allclose(shrunk.attend(x), ref, atol=1e-6) and big.shape == (1, 7, 7, 32)


def test_bad_input_is_a_clear_error():
    m = DaViT('tiny')
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        m(torch.randn(3, 224, 224))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        m(torch.randn(1, 1, 224, 224))


def test_with_cp_same_output_and_gradients(seed):
    x = torch.randn(2, 3, 96, 96)
    ref = dense_davit(drop_path_rate=0.0)
    cp = dense_davit(drop_path_rate=0.0, with_cp=True)
    cp.load_state_dict(ref.state_dict())
    outs = [sum(o.square().mean() for o in m.forward_dense(x)) for m in (ref, cp)]
    for loss in outs:
        loss.backward()
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for (n, p), (_, q) in zip(ref.named_parameters(), cp.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages_have_no_grad(seed, frozen):
    m = dense_davit(frozen_stages=frozen).train()
    sum(o.mean() for o in m.forward_dense(torch.randn(1, 3, 64, 64))).backward()
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




def test_meta_device_and_dtype_at_construction():
    """timm's factory passes device/dtype: every parameter is created there (a meta model allocates nothing)."""
    m = DaViT('base', device='meta', dtype=torch.bfloat16)
    assert {p.device.type for p in m.parameters()} == {'meta'} and {p.dtype for p in m.parameters()} == {torch.bfloat16}
    out = m(torch.randn(1, 3, 64, 64, device='meta', dtype=torch.bfloat16))
    assert out.shape == (1, 1000) and out.dtype == torch.bfloat16


def test_torchscript_and_fx_run_the_plain_forward(seed):
    """TorchScript compiles only the plain path (the fast kernels sit behind torch.jit.is_scripting()), and
    torch.fx traces it without branching on sizes (the padding helpers are fx leaves): both give eager's logits,
    at an odd size that pads every stage."""
    m = DaViT('tiny', num_classes=7).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        ref = m(x)
        scripted = torch.jit.script(m)(x)
        traced = torch.fx.symbolic_trace(m)(x)
    assert (scripted - ref).abs().max() < 1e-5 and (traced - ref).abs().max() < 1e-5


def test_importing_the_backbone_loads_no_openmmlab_package():
    """davit_backbone is plain PyTorch (timm optional): building and loading a model imports no mm* package."""
    import subprocess
    import sys
    code = ('import sys, torch, davit_backbone; m = davit_backbone.DaViT("tiny"); '
            'davit_backbone.load_pretrained(m, davit_backbone.to_official(m.state_dict())); '
            'print(sorted(n for n in sys.modules if n.split(".")[0] in '
            '("mmcv", "mmengine", "mmdet", "mmseg", "mmpretrain", "mmdavit")))')
    from helpers import ROOT
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == '[]', r.stdout

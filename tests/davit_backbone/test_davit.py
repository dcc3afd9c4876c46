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

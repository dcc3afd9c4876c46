"""Florence-2's DaViT (arch 'base_fl' / 'huge_fl'): the same model as timm 1.0.31's davit_*_fl, and the checkpoint
layouts it comes in (the Hugging Face Florence-2 release's ``vision_tower.*`` inside the whole VLM, timm's _fl)."""
import re

import pytest
import torch

from davit_backbone import DaViT, kernels, load_file, load_pretrained
from davit_backbone.convert import CheckpointFormatError, convert_state_dict
from davit_backbone.davit import ChannelAttention
from helpers import dense_davit, randomize_norms, to_florence2

# a small arch with every Florence-2 option, for the tests that need no timm reference
TINY_FL = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=12,
               down_kernel_size=3, channel_attn_v2=True)


def _timm_base_fl():
    timm = pytest.importorskip('timm')
    torch.manual_seed(0)
    return randomize_norms(timm.create_model('davit_base_fl', num_classes=0)).eval()


def _check_parity(ref_model, size, dtype):
    """timm's pooled features and its four features_only maps vs ours (pooled; forward_dense with identity norms)."""
    import timm
    sd = ref_model.state_dict()
    feats = timm.create_model('davit_base_fl', features_only=True).eval()
    # features_only flattens the stage list (stages_0...) and has no head
    feats.load_state_dict({re.sub(r'^stages\.', 'stages_', k): v for k, v in sd.items() if not k.startswith('head')})
    ours = DaViT('base_fl', num_classes=0).eval()
    ours.load_state_dict(convert_state_dict(sd))
    dense = dense_davit('base_fl').eval()
    dense.load_state_dict(convert_state_dict(sd), strict=False)  # norm{i}: not in the tower
    for i in range(4):
        setattr(dense, f'norm{i}', torch.nn.Identity())
    x = torch.randn(1, 3, *size, dtype=dtype)
    with torch.no_grad():
        ref_model.to(dtype), feats.to(dtype), ours.to(dtype), dense.to(dtype)
        pooled = (ours(x) - ref_model(x)).abs().max().item()
        maps = [(a - b).abs().max().item() for a, b in zip(dense.forward_dense(x), feats(x))]
        scale = [b.abs().max().item() for b in feats(x)]
    return pooled, maps, scale


def test_parity_with_timm_base_fl_at_an_odd_size(seed):
    """250x333: every stage pads its windows of 12 and the stem pads to a multiple of 4. In float64 the difference
    is rounding only, so the absolute bound holds on maps that grow to ~1e3 with random weights."""
    pooled, maps, _ = _check_parity(_timm_base_fl(), (250, 333), torch.float64)
    assert pooled < 1e-4 and max(maps) < 1e-4, (pooled, maps)


@pytest.mark.slow
def test_parity_with_timm_base_fl_at_768_fp32(seed):
    """Florence-2's input size, fp32, eval. Random weights with randomised norms drive stage 2's maps to ~3e3, where
    one fp32 ulp is 2.4e-4: the maps are compared relative to their magnitude, the pooled features absolutely."""
    pooled, maps, scale = _check_parity(_timm_base_fl(), (768, 768), torch.float32)
    assert pooled < 1e-4, pooled
    assert all(d < 1e-4 * max(1., s) for d, s in zip(maps, scale)), (maps, scale)


def _vlm_parts():
    """A few tensors of the rest of a Florence-2 checkpoint (names as in the release)."""
    return {'language_model.model.encoder.layers.0.fc1.weight': torch.randn(4, 4),
            'language_model.lm_head.weight': torch.randn(4, 4), 'image_projection': torch.randn(8, 4),
            'image_proj_norm.weight': torch.ones(4), 'image_pos_embed.row_embeddings.weight': torch.randn(50, 8),
            'visual_temporal_embed.pos_idx_to_embed': torch.randn(100, 8)}


def test_florence2_layout_round_trips_and_matches_timm_rules(seed, tmp_path):
    src = randomize_norms(DaViT(TINY_FL, num_classes=0)).eval()
    hf = dict(to_florence2(src.state_dict()), **_vlm_parts())
    assert any('.window_attn.fn.qkv.' in k for k in hf) and 'vision_tower.convs.0.proj.weight' in hf
    timm_davit = pytest.importorskip('timm.models.davit')
    # the inverse is right: timm's own rules map it back to our (= timm _fl) keys
    assert set(timm_davit._convert_florence2(hf, None)) == {k for k in src.state_dict() if not k.startswith('head')}
    sd, fmt = convert_state_dict(hf, return_format=True)
    assert fmt == 'florence2' and set(sd) == set(timm_davit._convert_florence2(hf, None))
    # the dense backbone loads the whole VLM file (safetensors, as the hub ships it) through load_pretrained
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / 'model.safetensors'))
    dense = dense_davit(TINY_FL).eval()
    messages = []
    dense._log_load = messages.append
    result = load_pretrained(dense, str(tmp_path / 'model.safetensors'))
    assert not result['unexpected']
    assert sorted(result['missing']) == sorted(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert 'florence2-format' in messages[0] and "'norm0'" in messages[0] and 'newly initialised' in messages[0]
    for k, v in dense.state_dict().items():
        if not k.startswith('norm'):
            assert torch.equal(v, src.state_dict()[k]), k
    for i in range(4):
        setattr(dense, f'norm{i}', torch.nn.Identity())
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        assert torch.equal(dense.forward_dense(x)[-1], src.forward_intermediates(x, intermediates_only=True)[-1])


def test_florence2_unknown_keys_still_raise():
    hf = dict(to_florence2(DaViT(TINY_FL, num_classes=0).state_dict()), **_vlm_parts())
    for extra in ('vision_tower.extra.weight', 'text_encoder.weight', 'language_model_typo'):
        with pytest.raises(CheckpointFormatError, match='map to no DaViT parameter'):
            convert_state_dict(dict(hf, **{extra: torch.zeros(1)}))
    # Florence-2's language model alone is no DaViT checkpoint: dropped only beside a vision tower
    with pytest.raises(CheckpointFormatError, match='not a DaViT checkpoint'):
        convert_state_dict(_vlm_parts())


def test_fl_checkpoint_into_an_eccv_arch_raises_a_shape_error():
    """timm's _fl keys equal ours; the 3x3 downsample convs are what tells the archs apart, before anything loads."""
    fl = DaViT(TINY_FL, num_classes=0).state_dict()
    eccv = DaViT({k: v for k, v in TINY_FL.items() if k not in ('down_kernel_size', 'channel_attn_v2')},
                 num_classes=0)
    before = {k: v.clone() for k, v in eccv.state_dict().items()}
    with pytest.raises(CheckpointFormatError, match=r'downsample\.conv\.weight: checkpoint \(32, 16, 3, 3\)'):
        load_pretrained(eccv, fl)
    assert all(torch.equal(v, before[k]) for k, v in eccv.state_dict().items())


def test_channel_attention_v2_formula_and_unpadded_token_count(seed):
    """softmax(q^T k / sqrt(N)) v^T per head with N the map's own token count, written out by hand."""
    attn = ChannelAttention(16, 2, v2=True).eval()
    x = torch.randn(2, 35, 16)  # 5x7 tokens: a window of 12 would pad them to 144; channel attention must not
    q, k, v = attn.qkv(x).reshape(2, 35, 3, 2, 8).permute(2, 0, 3, 1, 4)  # (B, heads, N, d)
    w = (q.transpose(-1, -2) @ k * 35 ** -0.5).softmax(-1)
    expected = attn.proj((w @ v.transpose(-1, -2)).transpose(-1, -2).transpose(1, 2).reshape(2, 35, 16))
    assert (attn(x) - expected).abs().max() < 1e-6
    v1 = ChannelAttention(16, 2)
    v1.load_state_dict(attn.state_dict())
    assert (v1(x) - expected).abs().max() > 1e-3  # the flag changes the formula


@pytest.mark.parametrize('grad', [False, True])
def test_fast_path_equals_plain_path_v2(seed, grad):
    """kernels.py's channel attention (both its SDPA and its strided-bmm branch) computes v2 as the plain path."""
    m = randomize_norms(dense_davit(TINY_FL, drop_path_rate=0.)).eval()
    x = torch.randn(2, 3, 61, 83)  # stage 0: N = 16 * 21 >= 4C (bmm branch); later stages: SDPA branch
    with torch.set_grad_enabled(grad):
        fast = m.forward_dense(x)
        with kernels.disabled():
            plain = m.forward_dense(x)
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_arch_options_resolve_and_explicit_arguments_win():
    m = DaViT('base_fl', num_classes=0)
    assert m.window_size == 12 and m.down_kernel_size == 3 and m.channel_attn_v2
    assert m.stages[1].downsample.conv.kernel_size == (3, 3) and m.stages[1].downsample.conv.padding == (1, 1)
    m = DaViT('base_fl', num_classes=0, window_size=7, channel_attn_v2=False)
    assert m.stages[0].blocks[0].spatial_block.window_size == 7 and not m.stages[0].blocks[0].channel_block.attn.v2
    assert DaViT('large_window12', num_classes=0).stages[0].blocks[0].spatial_block.window_size == 12
    assert DaViT('tiny').stages[1].downsample.conv.kernel_size == (2, 2)
    with pytest.raises(ValueError, match='remove'):
        DaViT(dict(TINY_FL, window=12))

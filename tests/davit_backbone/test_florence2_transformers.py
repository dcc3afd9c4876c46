"""Florence-2 as transformers ships it natively (``Florence2ForConditionalGeneration``, no remote code): its vision
tower against ours, and its checkpoint layouts (whole model, ``Florence2Model``, bare ``Florence2VisionBackbone``;
.safetensors, .bin, shards, ``save_pretrained`` folders) through every door a user has. transformers builds every
model here from its config with random weights: nothing is downloaded."""
import pytest
import torch

from davit_backbone import CheckpointFormatError, DaViT, convert_state_dict, load_file, load_pretrained
from helpers import FLORENCE2_TOY_ARCH, assert_tower, dense_davit, florence2_layouts, reference

transformers = reference('transformers')
Florence2VisionConfig = transformers.Florence2VisionConfig
Florence2VisionBackbone = reference('transformers.models.florence2.modeling_florence2').Florence2VisionBackbone

# Florence2VisionConfig's own defaults are Florence-2-base's tower; -large's dimensions are DaViT-H's
LARGE = dict(embed_dim=(256, 512, 1024, 2048), num_heads=(8, 16, 32, 64), num_groups=(8, 16, 32, 64))


def _tower(seed=0, **config):
    torch.manual_seed(seed)
    return Florence2VisionBackbone(Florence2VisionConfig(drop_path_rate=0., **config)).eval()


def _stage_maps(tower, x):
    """The four NCHW maps after each stage's last block, as transformers computes them."""
    maps = []
    hooks = [stage[-1].register_forward_hook(lambda m, i, o: maps.append(o)) for stage in tower.blocks]
    try:
        tower(x)
    finally:
        for h in hooks:
            h.remove()
    return maps


def _ours_for(tower, arch):
    ours = dense_davit(arch, drop_path_rate=0.).eval()
    report = load_pretrained(ours, tower.state_dict())
    assert report['format'] == 'florence2-transformers' and not report['dropped']
    for i in range(4):  # the tower has no output norms: compare the raw stage maps
        setattr(ours, f'norm{i}', torch.nn.Identity())
    return ours


@pytest.mark.parametrize('tower_cfg, arch, sizes', [
    (dict(), 'base_fl', [(224, 224), (250, 333), (97, 130)]),
    # Florence-2-large's dimensions, with 2 blocks in stage 2 instead of 9 to keep the suite's time
    (dict(LARGE, depths=(1, 1, 2, 1)), dict(embed_dims=LARGE['embed_dim'], depths=(1, 1, 2, 1),
                                            num_heads=LARGE['num_heads'], window_size=12, down_kernel_size=3,
                                            channel_attn_v2=True), [(130, 97)]),
], ids=['base', 'large-dims'])
def test_stage_maps_match_transformers(tower_cfg, arch, sizes):
    tower = _tower(**tower_cfg)
    ours = _ours_for(tower, arch)
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            theirs, mine = _stage_maps(tower, x), ours.forward_dense(x)
        for s, (a, b) in enumerate(zip(mine, theirs)):
            assert a.shape == b.shape, (size, s, a.shape, b.shape)
            err = (a - b).abs().max().item()
            assert err < 1e-4 * max(1., b.abs().max().item()), (size, s, err)


def test_arch_tables_are_transformers_configs():
    """base_fl / huge_fl are the shapes transformers builds for Florence-2-base / -large: the same tensors."""
    for cfg, arch in ((dict(), 'base_fl'), (LARGE, 'huge_fl')):
        with torch.device('meta'):
            theirs = Florence2VisionBackbone(Florence2VisionConfig(**cfg)).state_dict()
            ours = DaViT(arch, num_classes=0).state_dict()
        converted = convert_state_dict(theirs)
        tower = {k: v.shape for k, v in ours.items() if k.startswith(('stem.', 'stages.'))}
        assert {k: v.shape for k, v in converted.items()} == tower


# ----------------------------------------------------------------------------------------- the checkpoint layouts
@pytest.fixture(scope='module')
def florence2(tmp_path_factory):
    return florence2_layouts(tmp_path_factory.mktemp('florence2'))


def test_every_layout_loads_through_load_pretrained(florence2):
    tower, paths = florence2
    for name, path in paths.items():
        model = DaViT(FLORENCE2_TOY_ARCH, num_classes=0)
        report = load_pretrained(model, path)
        assert report['format'] == 'florence2-transformers', name
        assert_tower(model.state_dict(), tower)


def test_timm_create_model_takes_files_and_folders(florence2):
    timm = pytest.importorskip('timm')
    tower, paths = florence2
    arch = {k: FLORENCE2_TOY_ARCH[k] for k in ('embed_dims', 'depths', 'num_heads')}
    for name in ('whole.safetensors', 'backbone.bin', 'folder', 'shard index'):
        model = timm.create_model('DaViT_base_fl', pretrained=True, pretrained_cfg_overlay=dict(file=paths[name]),
                                  **arch)
        assert_tower(model.state_dict(), tower)


def test_a_tower_read_in_part_is_refused_not_loaded_silently(florence2, tmp_path):
    """timm loads the _fl towers non-strictly: a checkpoint that fills only part of the tower must say so."""
    timm = pytest.importorskip('timm')
    tower, paths = florence2
    sd = {k: v for k, v in load_file(paths['backbone.bin']).items() if not k.startswith('blocks.3.')}
    partial = str(tmp_path / 'partial.bin')
    torch.save(sd, partial)
    with pytest.raises(CheckpointFormatError, match=r'fills \d+ of the model\'s \d+ tower tensors'):
        timm.create_model('DaViT_base_fl', pretrained=True, pretrained_cfg_overlay=dict(file=partial),
                          **{k: FLORENCE2_TOY_ARCH[k] for k in ('embed_dims', 'depths', 'num_heads')})
    model = DaViT(FLORENCE2_TOY_ARCH, num_classes=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointFormatError, match='missing e.g.'):
        load_pretrained(model, partial)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_unknown_keys_beside_a_native_tower_still_raise(florence2):
    _, paths = florence2
    whole = load_file(paths['whole.safetensors'])
    for extra in ('model.vision_tower.extra.weight', 'model.text_encoder.weight', 'lm_head_typo'):
        with pytest.raises(CheckpointFormatError, match='map to no DaViT parameter'):
            convert_state_dict(dict(whole, **{extra: torch.zeros(1)}))
    with pytest.raises(FileNotFoundError, match='folder without model weights'):
        load_file(str(paths['folder']) + '/..')


def test_a_missing_shard_is_named(florence2, tmp_path):
    import json
    import shutil
    _, paths = florence2
    folder = tmp_path / 'sharded'
    shutil.copytree(paths['sharded folder'], folder)
    shard = sorted(set(json.loads((folder / 'model.safetensors.index.json').read_text())['weight_map'].values()))[0]
    (folder / shard).unlink()
    with pytest.raises(FileNotFoundError, match=f'shard {shard!r}'):
        load_file(str(folder))

import pytest
import torch

from davit_backbone import CheckpointFormatError, DaViT, convert_state_dict, detect_format, load_pretrained
from davit_backbone import to_official
from helpers import dense_davit, in_layout, randomize_norms

timm = pytest.importorskip('timm')


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_timm_logits_match(seed, arch):
    ref = randomize_norms(timm.create_model(f'davit_{arch}')).eval()
    ours = DaViT(arch, num_classes=1000).eval()
    sd, fmt = convert_state_dict(ref.state_dict(), return_format=True)
    assert fmt == 'timm'
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff < 1e-4, diff


def test_timm_odd_size_features_match(seed):
    """timm pads exactly as the official code; compare the last stage at a size no stride divides."""
    ref = randomize_norms(timm.create_model('davit_tiny')).eval()
    ours = DaViT('tiny', num_classes=1000).eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict()))
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        a = ours.forward_features(x)
        b = ref.forward_features(x)
    assert a.shape == b.shape and (a - b).abs().max() < 1e-4


def test_timm_features_only_checkpoint_converts():
    ref = timm.create_model('davit_tiny', features_only=True)
    sd = convert_state_dict(ref.state_dict())
    missing, unexpected = dense_davit().load_state_dict(sd, strict=False)
    assert unexpected == [] and sorted(missing) == sorted(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))


def test_official_layout_round_trip(seed):
    """The official release's naming, produced by inverting the converter, maps back to the same tensors and
    gives the same logits; also its wrappers ('model', 'module.')."""
    ours = randomize_norms(DaViT('tiny', num_classes=1000)).eval()
    official = to_official(ours.state_dict())
    assert any(k.startswith('main_blocks.2.1.0.cpe.1.proj') for k in official)
    assert 'norms.weight' in official and 'head.weight' in official
    wrapped = {'model': {'module.' + k: v for k, v in official.items()}, 'epoch': 300}
    sd, fmt = convert_state_dict(wrapped, return_format=True)
    assert fmt == 'official'
    again = DaViT('tiny', num_classes=1000).eval()
    again.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(again(x), ours(x))


def test_official_dense_norms_map_through():
    dense = dense_davit()
    sd = convert_state_dict(to_official(dense.state_dict()))
    assert set(sd) == set(dense.state_dict())


def test_whole_openmmlab_model_keeps_backbone_only():
    ours = dense_davit()
    sd = {'state_dict': {**{'backbone.' + k: v for k, v in ours.state_dict().items()},
                         'neck.lateral_convs.0.conv.weight': torch.zeros(1), 'meta': torch.zeros(1)}}
    assert set(convert_state_dict(sd)) == set(ours.state_dict())


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointFormatError, match='not a DaViT checkpoint'):
        convert_state_dict({'conv1.weight': torch.zeros(1), 'fc.weight': torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match='map to no DaViT parameter'):
        convert_state_dict({'stem.conv.weight': torch.zeros(1), 'layer1.0.conv1.weight': torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match='no tensors'):
        convert_state_dict({'epoch': 3})
    # a tiny checkpoint into a base model: shapes differ, nothing is loaded half-way
    base = DaViT('base')
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(CheckpointFormatError, match='other shapes'):
        load_pretrained(base, DaViT('tiny').state_dict())
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    with pytest.raises(FileNotFoundError, match='not found'):
        load_pretrained(base, str(tmp_path / 'nope.pth'))


def test_load_pretrained_file_drops_classifier_for_dense(tmp_path, seed):
    clf = DaViT('tiny', num_classes=1000)
    path = tmp_path / 'clf.pth'
    torch.save({'state_dict': clf.state_dict()}, path)
    dense = dense_davit()
    report = load_pretrained(dense, str(path))
    assert report['format'] == 'ours' and any(k.startswith('head.') for k in report['dropped'])
    assert sorted(report['missing']) == sorted(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert torch.equal(dense.stem.conv.weight, clf.stem.conv.weight)


def test_timm_registry_names():
    import davit_backbone  # noqa: F401
    assert {'DaViT_tiny', 'DaViT_small', 'DaViT_base'} <= set(timm.list_models('DaViT_*'))
    m = timm.create_model('DaViT_tiny', num_classes=10, drop_path_rate=0.2)
    assert isinstance(m, DaViT) and m.num_classes == 10
    assert timm.data.resolve_data_config({}, model=m)['interpolation'] == 'bicubic'


def test_detect_format_names():
    assert detect_format(dense_davit().state_dict()) == 'ours'
    assert detect_format(timm.create_model('davit_tiny').state_dict()) == 'timm'


def test_timm_gradients_match(seed):
    """Training parity: the same loss gives the same gradients as timm, parameter by parameter."""
    ref = randomize_norms(timm.create_model('davit_tiny', num_classes=10, drop_path_rate=0.0))
    ours = DaViT('tiny', num_classes=10, drop_path_rate=0.0)
    ours.load_state_dict(convert_state_dict(ref.state_dict()))
    x = torch.randn(2, 3, 97, 131)
    for m in (ref, ours):
        m(x).square().mean().backward()
    ref_grads = convert_state_dict({k: p.grad for k, p in ref.named_parameters()})
    grads = dict(ours.named_parameters())
    assert set(ref_grads) == set(grads)
    for k, g in ref_grads.items():
        assert torch.allclose(grads[k].grad, g, atol=1e-6, rtol=1e-3), k


def test_timm_features_only_dense_maps_match(seed):
    """All four maps of the dense backbone, at a size that pads every stage, against timm's features_only model
    (which has no output norms: ours are set to plain LayerNorm and applied to timm's maps)."""
    ref = randomize_norms(timm.create_model('davit_tiny', features_only=True)).eval()
    ours = dense_davit().eval()
    load_pretrained(ours, ref.state_dict())  # converted at the door; norm{i} stay 1 and 0
    x = torch.randn(1, 3, 200, 304)
    with torch.no_grad():
        maps = ours.forward_dense(x)
        ref_maps = [torch.nn.functional.layer_norm(m.permute(0, 2, 3, 1), m.shape[1:2]).permute(0, 3, 1, 2)
                    for m in ref(x)]
    for a, b in zip(maps, ref_maps):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4


# ------------------------------------------------------------------------------ explicit doors, nothing implicit
@pytest.mark.parametrize('fmt', ['official', 'timm', 'mmpretrain'])
def test_load_pretrained_converts_every_layout(seed, fmt):
    """``load_pretrained`` converts, strict included; ``model.load_state_dict`` takes our keys only, as any torch
    module (no conversion hidden in it)."""
    ref = randomize_norms(DaViT('tiny', num_classes=10))
    sd = in_layout(ref.state_dict(), fmt)
    assert detect_format(sd) == fmt
    ours = DaViT('tiny', num_classes=10)
    assert load_pretrained(ours, sd, strict=True)['format'] == fmt
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    with pytest.raises(RuntimeError, match='Unexpected key'):
        DaViT('tiny', num_classes=10).load_state_dict(sd, strict=True)


def _task_model():
    class TaskModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = DaViT('tiny', num_classes=0)
            self.head = torch.nn.Module()
            self.head.fc = torch.nn.Linear(768, 10)
    return TaskModel()


def test_bare_checkpoint_reaches_a_backbone_inside_a_task_model(seed, tmp_path):
    """The tools' gate converts for the model it is given: an official classifier file given to a model holding the
    backbone (as ``backbone``) and a separate ``head.fc`` fills both, and mmengine reports nothing unexpected or
    missing."""
    from mmdavit.checkpoints.reader import Checkpoint
    ref = randomize_norms(DaViT('tiny', num_classes=10))
    model = _task_model()
    messages = []
    import logging
    logger = logging.getLogger('test-door')
    logger.warning = messages.append
    # the official release stores its weights under 'model'
    Checkpoint('official.pth', obj={'model': to_official(ref.state_dict())}).load_into(model, logger=logger)
    assert messages == []  # mmengine warns about every missing or unexpected key: none
    assert torch.equal(model.head.fc.weight, ref.head.fc.weight)
    assert torch.equal(model.backbone.head.norm.weight, ref.head.norm.weight)
    assert torch.equal(model.backbone.stages[2].blocks[1].channel_block.mlp.fc2.weight,
                       ref.stages[2].blocks[1].channel_block.mlp.fc2.weight)


def test_scheme_hands_a_bare_file_to_a_task_model(seed, tmp_path):
    """The task repos' loaders read through mmengine's CheckpointLoader: its scheme hands a bare file on in the
    task model's layout (mmpretrain's ImageClassifier: backbone.*, the final norm as norm3, head.fc)."""
    from mmengine.runner.checkpoint import load_checkpoint
    import mmdavit  # noqa: F401  registers the scheme
    ref = randomize_norms(DaViT('tiny', num_classes=10))
    torch.save({'model': to_official(ref.state_dict())}, tmp_path / 'official.pth')
    model = _task_model()
    model.backbone = DaViT('tiny', with_head=False, out_indices=(3,))
    load_checkpoint(model, str(tmp_path / 'official.pth'), strict=True)
    assert torch.equal(model.head.fc.weight, ref.head.fc.weight)
    assert torch.equal(model.backbone.norm3.weight, ref.head.norm.weight)


def test_door_refuses_before_copying(seed):
    """A checkpoint of another arch, or with keys DaViT does not have, raises at the door, and the model keeps every
    value it had."""
    base = DaViT('base', num_classes=10)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(CheckpointFormatError, match='other shapes'):
        load_pretrained(base, to_official(DaViT('tiny', num_classes=10).state_dict()))
    with pytest.raises(CheckpointFormatError, match='map to no DaViT parameter'):
        load_pretrained(base, {**base.state_dict(), 'layer1.0.conv1.weight': torch.zeros(1)})
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())


def test_classifier_norm_follows_mmpretrain_convention(seed):
    """An official/timm classifier's final norm becomes norm3 of a backbone whose only output is the last stage
    (mmpretrain's conversion of those weights), and comes back as head.norm the other way."""
    clf = randomize_norms(DaViT('tiny', num_classes=10))
    last_only = DaViT('tiny', with_head=False, out_indices=(3,))
    load_pretrained(last_only, clf.state_dict(), strict=True)
    assert torch.equal(last_only.norm3.weight, clf.head.norm.weight)
    back = DaViT('tiny', num_classes=0)
    load_pretrained(back, last_only.state_dict(), strict=True)
    assert torch.equal(back.head.norm.bias, clf.head.norm.bias)

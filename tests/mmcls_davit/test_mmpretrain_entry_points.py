"""mmpretrain's own entry points with the plugin imported: its DaViT configs and model-zoo names build our backbone,
and get_model / its inferencer / its tools/train.py put the weights of a DaViT file of any layout into it."""
import pytest
import torch

from davit_backbone import DaViT
from helpers import in_layout, python_tool, randomize_norms, saved_tensors, task_tool, toy_data

import mmcls_davit  # noqa: F401  type='DaViT' in mmpretrain's scope is ours from here on
from mmdavit import DaViTMMPretrain


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """mmpretrain's registries and inferencers resolve names in the current default scope, which another test of
    the same process (another task's) may have left elsewhere."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _classifier(num_classes, seed=0):
    torch.manual_seed(seed)
    return randomize_norms(DaViT('tiny', num_classes=num_classes))


def _assert_classifier_weights(model, ref):
    bb = model.backbone
    for k, v in ref.state_dict().items():
        if k.startswith('head.fc.'):
            assert torch.equal(model.head.fc.state_dict()[k[len('head.fc.'):]], v), k
        elif k.startswith('head.norm.'):  # mmpretrain's layout: the classifier's norm is norm3, before the GAP neck
            assert torch.equal(bb.norm3.state_dict()[k[len('head.norm.'):]], v), k
        else:
            assert torch.equal(bb.state_dict()[k], v), k


@pytest.mark.parametrize('name', ['davit-tiny_3rdparty_in1k', 'davit-small_3rdparty_in1k', 'davit-base_3rdparty_in1k'])
def test_model_zoo_names_build_our_backbone(name):
    from mmpretrain import get_model
    model = get_model(name)
    assert type(model.backbone) is DaViTMMPretrain and model.backbone.out_indices == (3,)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224), mode='tensor').shape == (1, 1000)


@pytest.mark.parametrize('fmt', ['mmpretrain', 'official', 'timm', 'ours'])
def test_get_model_pretrained_loads_every_layout(tmp_path, fmt):
    from mmpretrain import get_model
    ref = _classifier(1000)
    path = tmp_path / f'{fmt}.pth'
    torch.save({'state_dict': in_layout(ref.state_dict(), fmt)}, path)
    model = get_model('davit-tiny_3rdparty_in1k', pretrained=str(path))
    _assert_classifier_weights(model, ref)


def test_image_classification_inferencer_takes_an_official_file(tmp_path):
    from mmpretrain import ImageClassificationInferencer
    ref = _classifier(1000)
    path = tmp_path / 'official.pth'
    torch.save(in_layout(ref.state_dict(), 'official'), path)
    inferencer = ImageClassificationInferencer('davit-tiny_3rdparty_in1k', pretrained=str(path), device='cpu')
    _assert_classifier_weights(inferencer.model, ref)
    result = inferencer(torch.randint(0, 255, (224, 224, 3), dtype=torch.uint8).numpy())[0]
    assert 0 <= result['pred_label'] < 1000


def test_frozen_stages_follows_mmpretrain_convention():
    """mmpretrain's frozen_stages=1 freezes the stem, stages 0 and 1 and the downsample leaving stage 1 (which
    mmpretrain keeps at the end of stage 1); mmdet's convention (mmdavit.DaViT) freezes one stage less."""
    from mmpretrain.registry import MODELS
    ours = MODELS.build(dict(type='DaViT', arch='t', out_indices=(3,), frozen_stages=1)).train()
    theirs = MODELS.build(dict(type='MMPretrainDaViT', arch='t', out_indices=(3,), frozen_stages=1))
    theirs.train()  # mmpretrain's train() returns None: no chaining
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    frozen_theirs = {n for n, p in theirs.named_parameters() if not p.requires_grad}
    assert len(frozen) and sum(ours.state_dict()[n].numel() for n in frozen) == \
        sum(theirs.state_dict()[n].numel() for n in frozen_theirs)
    assert all(n.startswith(('stem.', 'stages.0.', 'stages.1.', 'stages.2.downsample.')) for n in frozen)
    from mmdavit import DaViT as DetStyle
    det = DetStyle(arch='tiny', frozen_stages=1)
    assert not any(n.startswith('stages.1.') for n, p in det.named_parameters() if not p.requires_grad)


def test_mmpretrain_arguments_are_accepted_with_their_meaning():
    from mmpretrain.registry import MODELS
    m = MODELS.build(dict(type='DaViT', arch=dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]),
                          ffn_ratio=2., out_indices=(1, 3), norm_cfg=None, patch_size=4, window_size=7,
                          stage_cfgs=dict(window_size=4), with_cp=False, norm_eval=True))
    assert m.embed_dims == (32, 64, 128, 256) and m.stages[0].blocks[0].spatial_block.mlp.fc1.out_features == 64
    assert m.stages[2].blocks[0].spatial_block.window_size == 4
    outs = m(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 256] and isinstance(m.norm1, torch.nn.Identity)
    with pytest.raises(ValueError, match='stage_cfgs'):
        MODELS.build(dict(type='DaViT', arch='t', stage_cfgs=dict(block_cfgs=dict())))
    with pytest.raises(ValueError, match='norm_cfg'):
        MODELS.build(dict(type='DaViT', arch='t', norm_cfg=dict(type='BN')))


@pytest.mark.slow
def test_mmpretrain_train_tool_load_from_official_file(tmp_path):
    """mmpretrain's own tools/train.py on our toy config with load_from=<official classifier file>: at lr 0 the
    checkpoint it writes holds exactly the file's weights (backbone and the 3-class Linear in the task head)."""
    toy_data('imagenet')
    ref = _classifier(3)
    path = tmp_path / 'official.pth'
    torch.save({'model': in_layout(ref.state_dict(), 'official')}, path)
    r = python_tool(task_tool('mmpretrain', 'train.py'), 'configs/toy/davit-t_toy-imagefolder.py',
                    '--work-dir', str(tmp_path / 'wd'), '--cfg-options', f'load_from={path}',
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=5', 'optim_wrapper.optimizer.lr=0.0',
                    'train_dataloader.dataset.indices=[0,24,48]', 'train_dataloader.batch_size=3',
                    'default_hooks.checkpoint.interval=1', 'param_scheduler=[]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'unexpected key' not in r.stdout + r.stderr and 'official-format DaViT checkpoint' in r.stdout + r.stderr
    sd = saved_tensors(tmp_path / 'wd' / 'epoch_1.pth')
    for k, v in ref.state_dict().items():
        key = k if k.startswith('head.fc.') else 'backbone.' + k
        assert torch.equal(sd[key], v), k

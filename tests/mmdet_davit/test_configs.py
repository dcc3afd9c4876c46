"""Every detection config builds its model and trains a step on a small image (CPU)."""
import os

import pytest
import torch

from helpers import ROOT, build_from_config, config_files

CONFIGS = config_files('mmdet') + [os.path.join(ROOT, 'configs', n) for n in (
    'davit_retinanet_1x_coco.py', 'davit_retinanet_3x_coco.py', 'davit_maskrcnn_1x_coco.py',
    'davit_maskrcnn_3x_coco.py')] + [p for p in config_files('toy') if 'coco' in p]


def test_twelve_configs_exist():
    names = {os.path.basename(p) for p in config_files('mmdet')}
    expected = {f'{m}_davit-{a}_fpn_{s}_coco.py' for m in ('retinanet', 'mask-rcnn') for a in 'tsb'
                for s in ('1x', '3x')}
    assert expected | {'mask-rcnn_davit-b-fl_fpn_1x_coco.py'} == names  # the paper's twelve and Florence-2's


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_trains_a_step(path, seed):
    from mmdet.testing import demo_mm_inputs
    # the Florence-2 config points at a checkpoint file a user downloads; here the weights stay random
    cfg, model = build_from_config(path, **{'model.backbone.pretrained': None})
    assert cfg.model.backbone.type == 'DaViT'
    model.init_weights()
    model.train()
    with_mask = 'roi_head' in cfg.model
    num_classes = 3 if '/toy/' in path else 80
    packed = demo_mm_inputs(1, [[3, 96, 128]], num_items=[2], num_classes=num_classes, with_mask=with_mask)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v) for k, v in losses.items()
                if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem.conv.weight.grad is not None


def test_schedules_and_drop_path_as_specified():
    from mmengine.config import Config
    c1 = Config.fromfile(os.path.join(ROOT, 'configs/mmdet/mask-rcnn_davit-t_fpn_1x_coco.py'))
    c3 = Config.fromfile(os.path.join(ROOT, 'configs/mmdet/retinanet_davit-t_fpn_3x_coco.py'))
    assert c1.train_cfg.max_epochs == 12 and c1.param_scheduler[1].milestones == [8, 11]
    assert c3.train_cfg.max_epochs == 36 and c3.param_scheduler[1].milestones == [27, 33]
    assert c1.model.backbone.drop_path_rate == 0.1 and c3.model.backbone.drop_path_rate == 0.2
    opt = c1.optim_wrapper.optimizer
    assert (opt.type, opt.lr, tuple(opt.betas), opt.weight_decay) == ('AdamW', 1e-4, (0.9, 0.999), 0.05)
    assert c1.auto_scale_lr == dict(enable=True, base_batch_size=16) and c1.train_dataloader.batch_size == 2
    assert c1.data_root == 'data/coco/'
    assert c3.model.backbone.out_indices == (1, 2, 3) and c3.model.neck.add_extra_convs == 'on_input'

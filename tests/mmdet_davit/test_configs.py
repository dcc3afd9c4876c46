"""Every detection config builds its model and trains a step on a small image (CPU)."""
import os
import re

import numpy as np
import pytest
import torch

from helpers import (ROOT, build_from_config, built_on_meta, config_files, drop_path_rates, task_config,
                     weight_decay_of, without_scope)
from mmdavit.training.schedule import learning_rates

CONFIGS = config_files('mmdet') + [os.path.join(ROOT, 'configs', n) for n in (
    'davit_retinanet_1x_coco.py', 'davit_retinanet_3x_coco.py', 'davit_maskrcnn_1x_coco.py',
    'davit_maskrcnn_3x_coco.py')] + [p for p in config_files('toy') if 'coco' in p]


def test_the_papers_twelve_configs_are_what_their_names_say():
    """The paper's twelve (RetinaNet and Mask R-CNN; T, S, B; 1x and 3x) and Florence-2's, each building the
    detector, arch and schedule its name says (12 epochs with lr steps at 8 and 11, or 36 with 27 and 33)."""
    from mmengine.config import Config
    names = {os.path.basename(p) for p in config_files('mmdet') if '_fpn_' in p}  # DINO's: test_dino_configs_*
    expected = {f'{m}_davit-{a}_fpn_{s}_coco.py' for m in ('retinanet', 'mask-rcnn') for a in 'tsb'
                for s in ('1x', '3x')}
    assert expected | {'mask-rcnn_davit-b-fl_fpn_1x_coco.py', 'mask-rcnn_davit-h-fl_fpn_1x_coco.py'} == names
    for name in sorted(names):
        cfg = Config.fromfile(os.path.join(ROOT, 'configs/mmdet', name))
        model, arch, schedule = re.match(r'(retinanet|mask-rcnn)_davit-([tsbh](?:-fl)?)_fpn_(1x|3x)_coco',
                                         name).groups()
        assert cfg.model.type == {'retinanet': 'RetinaNet', 'mask-rcnn': 'MaskRCNN'}[model], name
        assert cfg.model.backbone.arch == {'t': 'tiny', 's': 'small', 'b': 'base', 'b-fl': 'base_fl',
                                         'h-fl': 'huge_fl'}[arch], name
        steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert (cfg.train_cfg.max_epochs, steps[0].milestones) == {'1x': (12, [8, 11]), '3x': (36, [27, 33])}[
            schedule], name
        # the official release's DETR-style multi-scale augmentation, for both schedules
        assert 'RandomChoice' in [t.type for t in cfg.train_dataloader.dataset.pipeline], name


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_trains_a_step(path, seed):
    from mmdet.testing import demo_mm_inputs
    if built_on_meta(path, **{'model.backbone.pretrained': None}):
        return
    # the Florence-2 config points at a checkpoint file a user downloads; here the weights stay random
    # DINO's two-stage query selection takes its 900 queries from the encoder's tokens: a 96x128 image has 256
    cfg, model = build_from_config(path, **{'model.backbone.pretrained': None},
                                   **({'model.num_queries': 100} if '/dino-' in path else {}))
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


def release_lr(iteration, epoch, milestones):
    """The release's mmdet 2.x schedule (mmcv 1.x): AdamW 1e-4 for 8 GPUs x 2 images, x0.1 at each milestone epoch,
    times a linear warmup from 0.001 over the first 500 iterations."""
    warmup = 1 - (1 - np.minimum(iteration, 500) / 500) * (1 - 0.001)
    return 1e-4 * warmup * 0.1 ** (epoch[:, None] >= np.array(milestones)[None]).sum(1)


@pytest.mark.parametrize('name,epochs,milestones,drop_path', [
    ('mask-rcnn_davit-t_fpn_1x_coco.py', 12, (8, 11), 0.1),
    ('retinanet_davit-t_fpn_3x_coco.py', 36, (27, 33), 0.2)])
def test_schedule_is_the_releases(name, epochs, milestones, drop_path, tmp_path):
    """Every iteration's learning rate as mmengine sets it from the config (600 iterations an epoch here), against
    the release's schedule; weight decay 0.05 on every parameter (the release has no exceptions); a single process
    with 2 images gets 2/16 of the lr (auto_scale_lr, the linear rule); the release's stochastic depth."""
    cfg, model = build_from_config(os.path.join(ROOT, 'configs/mmdet', name))
    per_gpu = cfg.train_dataloader.batch_size
    optimizer, curves = learning_rates(cfg, model, 8 * per_gpu, 600, tmp_path / '8x2')
    it = np.arange(epochs * 600)
    (lrs,) = curves.values()  # one rate for every parameter group
    assert lrs.shape == it.shape
    # mmengine's LinearLR reaches 1 at iteration end - 1, mmcv 1.x's at end: 1/500 (0.2%) apart at most
    np.testing.assert_allclose(lrs, release_lr(it, it // 600, milestones), rtol=2.5e-3)
    assert set(weight_decay_of(optimizer, model).values()) == {0.05}
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults['betas'] == (0.9, 0.999)
    _, one_process = learning_rates(cfg, model, per_gpu, 600, tmp_path / '1x2')
    np.testing.assert_allclose(*one_process.values(), lrs * per_gpu / 16, rtol=1e-12)
    assert max(drop_path_rates(model)) == pytest.approx(drop_path)


def test_florence_stagewise_lr():
    """Florence-2 fine-tuning: each earlier backbone stage learns at 0.8 of the next one's rate (the stem at 0.8^5),
    norms inside the stages included; FPN, heads and the new output norms at the full rate, output norms undecayed."""
    from mmengine.optim import build_optim_wrapper
    cfg, model = build_from_config(os.path.join(ROOT, 'configs/mmdet/mask-rcnn_davit-b-fl_fpn_1x_coco.py'),
                                   **{'model.backbone.pretrained': None})
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    lr = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    wd = weight_decay_of(optimizer, model)
    for name, p in model.named_parameters():
        parts = name.split('.')
        if name.startswith('backbone.stem.'):
            depth = 5
        elif name.startswith('backbone.stages.'):
            depth = 4 - int(parts[2])
        else:
            depth = 0
        assert lr[id(p)] == pytest.approx(1e-4 * 0.8 ** depth), name
        if re.match(r'backbone\.norm\d\.', name):
            assert wd[name] == 0.0, name
        else:
            assert wd[name] == 0.05, name


def test_florence_large_is_the_base_recipe_on_the_wider_tower():
    """Florence-2-large's config is Florence-2-base's fine-tuning recipe (the same stage-wise lr and weight decay)
    on the huge_fl tower: FPN inputs of its widths, checkpointing on, drop path one 0.1 step up, the transformers-native
    checkpoint. Read from the configs: the build (on the meta device) is test_config_builds_and_trains_a_step's."""
    from mmengine.config import Config

    from davit_backbone import arch_zoo
    base, large = (Config.fromfile(os.path.join(ROOT, f'configs/mmdet/mask-rcnn_davit-{a}_fpn_1x_coco.py'))
                   for a in ('b-fl', 'h-fl'))
    assert large.optim_wrapper == base.optim_wrapper
    assert large.model.neck.in_channels == list(arch_zoo['huge_fl']['embed_dims'])
    assert large.model.backbone.with_cp and not base.model.backbone.with_cp
    assert large.model.backbone.drop_path_rate == pytest.approx(base.model.backbone.drop_path_rate + 0.1)
    assert large.model.backbone.pretrained == 'checkpoints/Florence-2-large'
    assert (large.train_dataloader, large.param_scheduler) == (base.train_dataloader, base.param_scheduler)


DINO_CONFIGS = [os.path.join(ROOT, 'configs/mmdet', f'dino-4scale_davit-{a}_8xb2-12e_coco.py')
                for a in ('t', 'b-fl', 'h-fl')]


@pytest.mark.parametrize('path', DINO_CONFIGS, ids=os.path.basename)
def test_dino_configs_are_mmdets_recipe_on_davit(path):
    """Everything but the backbone is mmdet's own DINO 4-scale 12e recipe (model, data, schedule, optimiser): the
    backbone's stages 1..3 feed ChannelMapper (in_channels their widths) and its extra level makes the 4 scales."""
    from mmengine.config import Config

    from davit_backbone import arch_zoo
    ours = Config.fromfile(path)
    theirs = Config.fromfile(task_config('mmdet', 'dino/dino-4scale_r50_8xb2-12e_coco.py'))
    arch = {'t': 'tiny', 'b-fl': 'base_fl', 'h-fl': 'huge_fl'}[os.path.basename(path).split('_davit-')[1].split('_')[0]]
    assert (ours.model.backbone.type, ours.model.backbone.arch) == ('DaViT', arch)
    assert tuple(ours.model.backbone.out_indices) == (1, 2, 3)
    assert ours.model.neck.in_channels == list(arch_zoo[arch]['embed_dims'][1:])
    assert ours.model.neck.num_outs == 4 == ours.model.encoder.layer_cfg.self_attn_cfg.num_levels
    assert ours.model.backbone.with_cp == (arch == 'huge_fl')
    if arch != 'tiny':
        size = 'base' if arch == 'base_fl' else 'large'
        assert ours.model.backbone.pretrained == f'checkpoints/Florence-2-{size}'
    ours.model.neck.pop('in_channels'), theirs.model.neck.pop('in_channels')
    ours.model.pop('backbone'), theirs.model.pop('backbone')
    for key in ('model', 'train_dataloader', 'val_dataloader', 'val_evaluator', 'param_scheduler', 'train_cfg',
                'auto_scale_lr'):
        assert without_scope(ours[key]) == without_scope(theirs[key]), key
    for key in ('type', 'optimizer', 'clip_grad'):
        assert without_scope(ours.optim_wrapper[key]) == without_scope(theirs.optim_wrapper[key]), key
    assert ours.optim_wrapper.paramwise_cfg.custom_keys['backbone'] == dict(lr_mult=0.1)
    assert (ours.train_cfg.max_epochs, ours.param_scheduler[0].milestones) == (12, [11])
    assert ours.default_hooks.checkpoint.type == 'mmdavit.AtomicCheckpointHook'


def test_dino_florence_stagewise_lr():
    """The -fl DINO: mask-rcnn_davit-b-fl's stage-wise decay 0.8 under the DINO recipe's 0.1 for the backbone (the
    stem at 0.1 x 0.8^5 .. stage 3 at 0.1 x 0.8, norms inside the stages included); the new output norms at the full
    lr and undecayed; the transformer and heads at the recipe's lr and weight decay. The huge tower's config has the
    same rules (read from the configs; its build is test_config_builds_and_trains_a_step's)."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg, model = build_from_config(DINO_CONFIGS[1], **{'model.backbone.pretrained': None})
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    lr = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    wd = weight_decay_of(optimizer, model)
    for name, p in model.named_parameters():
        parts = name.split('.')
        if name.startswith('backbone.stem.'):
            expected = 0.1 * 0.8 ** 5
        elif name.startswith('backbone.stages.'):
            expected = 0.1 * 0.8 ** (4 - int(parts[2]))
        else:
            expected = 1.0
        assert lr[id(p)] == pytest.approx(1e-4 * expected), name
        assert wd[name] == (0.0 if re.match(r'backbone\.norm\d\.', name) else 1e-4), name
    assert any(re.match(r'backbone\.norm\d\.', n) for n, _ in model.named_parameters())
    assert Config.fromfile(DINO_CONFIGS[2]).optim_wrapper == cfg.optim_wrapper

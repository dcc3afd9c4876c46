"""Every segmentation config builds and trains a step; schedule and test-time resizing are the release's."""
import os

import numpy as np
import pytest
import torch

from helpers import (ROOT, build_from_config, built_on_meta, config_files, drop_path_rates, task_config,
                     weight_decay_of, without_scope)
from mmdavit.training.schedule import learning_rates

T_CONFIG = os.path.join(ROOT, 'configs/mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py')
CONFIGS = config_files('mmseg') + [os.path.join(ROOT, 'configs', 'upernet_davit_512x512_160k_ade20k.py')]


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_trains_a_step(path, seed):
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    # SyncBN needs a process group; the real configs keep it, the test swaps in BN as single-GPU runs do (UPerNet's
    # heads). Mask2Former's have GroupNorm and LayerNorm only; its loss samples 1024 points of each mask here instead of
    # 12544 (the same code, at a fraction of the time on a 64x64 image)
    if 'mask2former' in os.path.basename(path):
        light = {'model.decode_head.train_cfg.num_points': 1024}
    else:
        light = {'model.decode_head.norm_cfg.type': 'BN', 'model.auxiliary_head.norm_cfg.type': 'BN'}
    if built_on_meta(path, **light, **{'model.backbone.pretrained': None}):
        return
    cfg, model = build_from_config(path, **light, **{'model.data_preprocessor.size': (64, 64)})
    assert cfg.model.backbone.type == 'DaViT' and cfg.model.decode_head.num_classes == 150
    model.train()
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
        s.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(s)
    losses = model(torch.randn(2, 3, 64, 64), samples, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem.conv.weight.grad is not None


def test_schedule_is_the_releases(tmp_path):
    """The learning rate of all 160k iterations and the weight decay of every parameter, as mmengine sets them from
    the config, against the release's recipe (mmseg 0.x on mmcv 1.x) written out here: AdamW 6e-5, weight decay
    0.01 on everything, poly decay (power 1, min 0) over 160k iterations times a linear warmup from 1e-6 over 1500;
    8 GPUs x 2 images; drop path 0.3 for DaViT-T."""
    cfg, model = build_from_config(T_CONFIG)
    optimizer, curves = learning_rates(cfg, model, batch_size=8 * cfg.train_dataloader.batch_size,
                                       iters_per_epoch=1, work_dir=tmp_path)
    it = np.arange(160000)
    warmup = 1 - (1 - np.minimum(it, 1500) / 1500) * (1 - 1e-6)
    expected = 6e-5 * (1 - it / 160000) * warmup
    (lrs,) = curves.values()  # one rate for every parameter group
    assert lrs.shape == (160000,)
    # mmengine's LinearLR/PolyLR reach their end value at iteration end - 1, mmcv 1.x's at end: below 0.07% of the
    # lr, or one poly step (6e-5 / 160k) near the end, apart
    np.testing.assert_allclose(lrs, expected, rtol=1e-3, atol=6e-5 / 160000)
    assert set(weight_decay_of(optimizer, model).values()) == {0.01}
    assert max(drop_path_rates(model)) == pytest.approx(0.3)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults['betas'] == (0.9, 0.999)


@pytest.mark.parametrize('height,width', [(512, 683), (256, 256), (375, 500), (1200, 300), (900, 1600)])
def test_aug_test_sizes_are_the_releases(height, width):
    """--aug-test resizes as the release's mmseg 0.x MultiScaleFlipAug did: for each ratio r the image is fitted
    into (2048 r, 512 r) keeping its aspect (mmcv's rescale rule), then used flipped and not."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS
    init_default_scope('mmseg')
    tta = Config.fromfile(T_CONFIG).tta_pipeline[1]
    resizes, flips = tta.transforms[0], tta.transforms[1]
    shapes = [TRANSFORMS.build(t)(dict(img=np.zeros((height, width, 3), np.uint8)))['img'].shape[:2]
              for t in resizes]
    expected = []
    for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        scale = min(int(2048 * r) / max(height, width), int(512 * r) / min(height, width))
        expected.append((int(height * scale + 0.5), int(width * scale + 0.5)))
    assert shapes == expected
    assert sorted((f.prob, f.direction) for f in flips) == [(0.0, 'horizontal'), (1.0, 'horizontal')]


def test_florence_large_is_the_base_recipe_on_the_wider_tower():
    """Florence-2-large's config is Florence-2-base's fine-tuning recipe (the same stage-wise lr, no weight decay on
    norms) on the huge_fl tower: heads reading its widths, checkpointing on, drop path one 0.1 step up, the
    transformers-native checkpoint. Read from the configs: the build (on the meta device) is
    test_config_builds_and_trains_a_step's."""
    from mmengine.config import Config

    from davit_backbone import arch_zoo
    base, large = (Config.fromfile(os.path.join(ROOT, f'configs/mmseg/upernet_davit-{a}_8xb2-160k_ade20k-512x512.py'))
                   for a in ('b-fl', 'h-fl'))
    dims = list(arch_zoo['huge_fl']['embed_dims'])
    assert large.optim_wrapper == base.optim_wrapper
    assert large.model.decode_head.in_channels == dims
    assert large.model.auxiliary_head.in_channels == dims[large.model.auxiliary_head.in_index]
    assert large.model.backbone.arch == 'huge_fl'
    assert large.model.backbone.with_cp and not base.model.backbone.with_cp
    assert large.model.backbone.drop_path_rate == pytest.approx(base.model.backbone.drop_path_rate + 0.1)
    assert large.model.backbone.pretrained == 'checkpoints/Florence-2-large'
    assert (large.train_dataloader, large.param_scheduler) == (base.train_dataloader, base.param_scheduler)


M2F_CONFIGS = [os.path.join(ROOT, 'configs/mmseg', f'mask2former_davit-{a}_8xb2-160k_ade20k-512x512.py')
               for a in ('t', 'b-fl', 'h-fl')]


@pytest.mark.parametrize('path', M2F_CONFIGS, ids=os.path.basename)
def test_mask2former_configs_are_mmsegs_recipe_on_davit(path):
    """Everything but the backbone is mmseg's own Mask2Former 160k ADE20K 512x512 recipe (head, data, schedule,
    optimiser, checkpoint hook's arguments); the decode head reads the backbone's four stages."""
    from mmengine.config import Config

    from davit_backbone import arch_zoo
    ours = Config.fromfile(path)
    theirs = Config.fromfile(task_config('mmseg', 'mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'))
    arch = {'t': 'tiny', 'b-fl': 'base_fl', 'h-fl': 'huge_fl'}[os.path.basename(path).split('_davit-')[1].split('_')[0]]
    assert (ours.model.backbone.type, ours.model.backbone.arch) == ('DaViT', arch)
    assert tuple(ours.model.backbone.out_indices) == (0, 1, 2, 3)
    assert ours.model.decode_head.in_channels == list(arch_zoo[arch]['embed_dims'])
    assert ours.model.backbone.with_cp == (arch == 'huge_fl')
    if arch != 'tiny':
        size = 'base' if arch == 'base_fl' else 'large'
        assert ours.model.backbone.pretrained == f'checkpoints/Florence-2-{size}'
    assert 'mmseg_davit' in ours.custom_imports.imports and 'mmdet.models' in ours.custom_imports.imports
    ours.model.decode_head.pop('in_channels'), theirs.model.decode_head.pop('in_channels')
    ours.model.pop('backbone'), theirs.model.pop('backbone')
    for key in ('model', 'train_dataloader', 'val_dataloader', 'val_evaluator', 'param_scheduler', 'train_cfg'):
        assert without_scope(ours[key]) == without_scope(theirs[key]), key
    for key in ('type', 'optimizer', 'clip_grad'):
        assert without_scope(ours.optim_wrapper[key]) == without_scope(theirs.optim_wrapper[key]), key
    assert ours.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0
    hook = without_scope(ours.default_hooks.checkpoint)
    assert hook.pop('type') == 'mmdavit.AtomicCheckpointHook'
    assert hook == {k: v for k, v in without_scope(theirs.default_hooks.checkpoint).items() if k != 'type'}


def _is_norm(module):
    return isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize('arch', ['t', 'b-fl'])
def test_mask2former_optimizer_rules(arch):
    """Every parameter's lr and weight decay as mmengine builds them from the config. DaViT-T, mmseg's Swin-T rules
    in DaViT's names: the backbone at 0.1 of the lr, its norms undecayed. Florence-2-base: the -fl stage-wise decay
    0.8 under that 0.1 (stem 0.1 x 0.8^5 .. stage 3 0.1 x 0.8, norms inside the stages included and decayed), the
    new output norms at the full lr, undecayed. The head as mmseg's recipe: queries' and levels' embeddings and
    norms undecayed. The huge tower's config has the same rules as -b-fl."""
    import re

    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    path = M2F_CONFIGS[0 if arch == 't' else 1]
    cfg, model = build_from_config(path, **{'model.backbone.pretrained': None})
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    lr = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    wd = weight_decay_of(optimizer, model)
    in_norm = {f'{m}.{n}' for m, mod in model.named_modules() if _is_norm(mod) for n, _ in mod.named_parameters()}
    backbone_norms = 0
    for name, p in model.named_parameters():
        parts = name.split('.')
        if name.startswith('backbone.'):
            output_norm = re.match(r'backbone\.norm\d\.', name) is not None
            if arch == 't':
                mult, decay = 0.1, name not in in_norm
            elif output_norm:
                mult, decay = 1.0, False
            else:
                mult, decay = 0.1 * 0.8 ** (5 if parts[1] == 'stem' else 4 - int(parts[2])), True
            backbone_norms += name in in_norm
        else:
            mult = 1.0
            decay = name not in in_norm and not re.match(r'decode_head\.(query_embed|query_feat|level_embed)\.', name)
        assert lr[id(p)] == pytest.approx(1e-4 * mult), name
        assert wd[name] == (0.05 if decay else 0.0), name
    assert backbone_norms > 0 and 'decode_head.query_embed.weight' in wd
    if arch == 'b-fl':
        assert Config.fromfile(M2F_CONFIGS[2]).optim_wrapper == cfg.optim_wrapper

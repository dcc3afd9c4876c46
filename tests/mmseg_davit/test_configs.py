"""Every segmentation config builds and trains a step; schedule and test-time resizing are the release's."""
import os

import numpy as np
import pytest
import torch

from helpers import ROOT, build_from_config, config_files, drop_path_rates, weight_decay_of
from mmdavit.schedule import learning_rates

T_CONFIG = os.path.join(ROOT, 'configs/mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py')
CONFIGS = config_files('mmseg') + [os.path.join(ROOT, 'configs', 'upernet_davit_512x512_160k_ade20k.py')]


# DaViT-H (huge_fl: 360M parameters) takes about 15 s to build and 25 s for one step at 96x128 on 2 cores, so its
# configs are built on the meta device instead: the backbone, with checkpointing, and the neck run forward and
# backward on shapes alone, which checks every module's arguments and the channels between them; the heads' inputs
# are checked in test_florence_large_is_the_base_recipe_on_the_wider_tower, the loss path on the smaller archs
META_ARCHS = ('huge', 'huge_fl', 'giant')


def built_on_meta(path, **overrides):
    from mmengine.config import Config
    if Config.fromfile(path).model.backbone.get('arch') not in META_ARCHS:
        return False
    with torch.device('meta'):
        cfg, model = build_from_config(path, **overrides)
        model.train()
        feats = model.extract_feat(torch.randn(2, 3, 96, 128))
        sum(f.sum() for f in feats).backward()
    assert cfg.model.backbone.type == 'DaViT' and model.backbone.stem.conv.weight.grad is not None
    return True


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_trains_a_step(path, seed):
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    if built_on_meta(path, **{'model.decode_head.norm_cfg.type': 'BN', 'model.auxiliary_head.norm_cfg.type': 'BN',
                              'model.backbone.pretrained': None}):
        return
    # SyncBN needs a process group; the real configs keep it, the test swaps in BN as single-GPU runs do
    cfg, model = build_from_config(path, **{'model.decode_head.norm_cfg.type': 'BN',
                                            'model.auxiliary_head.norm_cfg.type': 'BN',
                                            'model.data_preprocessor.size': (64, 64)})
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
    assert large.model.backbone.pretrained == 'checkpoints/Florence-2-large/model.safetensors'
    assert (large.train_dataloader, large.param_scheduler) == (base.train_dataloader, base.param_scheduler)

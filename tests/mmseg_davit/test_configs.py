"""Every segmentation config builds and trains a step; the schedule is the paper's."""
import os

import pytest
import torch

from helpers import ROOT, build_from_config, config_files

CONFIGS = config_files('mmseg') + [os.path.join(ROOT, 'configs', 'upernet_davit_512x512_160k_ade20k.py')]


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_trains_a_step(path, seed):
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
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


def test_schedule_as_paper():
    from mmengine.config import Config
    c = Config.fromfile(os.path.join(ROOT, 'configs/mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py'))
    opt = c.optim_wrapper.optimizer
    assert (opt.type, opt.lr, tuple(opt.betas), opt.weight_decay) == ('AdamW', 6e-5, (0.9, 0.999), 0.01)
    warm, poly = c.param_scheduler
    assert (warm.type, warm.start_factor, warm.end) == ('LinearLR', 1e-6, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == ('PolyLR', 1.0, 0.0, 1500, 160000)
    assert c.train_cfg.max_iters == 160000 and c.train_dataloader.batch_size == 2 and c.crop_size == (512, 512)
    assert c.model.backbone.drop_path_rate == 0.3 and c.model.auxiliary_head.in_channels == 384
    assert c.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    ratios = [t.scale_factor for t in c.tta_pipeline[1].transforms[0]]
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]

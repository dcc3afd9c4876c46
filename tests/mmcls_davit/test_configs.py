"""Classification configs build, match the paper's numbers, and mmpretrain's DaViT converts into ours."""
import os

import pytest
import torch

from helpers import ROOT, build_from_config, randomize_norms


@pytest.mark.parametrize('arch,params_m', [('tiny', 28.3), ('small', 49.7), ('base', 87.9)])
def test_config_builds_with_paper_params_and_trains_a_step(arch, params_m, seed):
    from mmpretrain.structures import DataSample
    cfg, model = build_from_config(os.path.join(ROOT, f'configs/mmcls/davit-{arch}_8xb128_in1k.py'))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m <= n < params_m + 0.1, n
    model.train()
    samples = [DataSample().set_gt_label(i) for i in (1, 7)]
    loss = model(torch.randn(2, 3, 64, 64), samples, mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.stem.conv.weight.grad is not None


def test_recipe_as_paper():
    from mmengine.config import Config
    c = Config.fromfile(os.path.join(ROOT, 'configs/mmcls/davit-base_8xb128_in1k.py'))
    assert c.train_cfg.max_epochs == 300 and c.train_dataloader.batch_size == 128
    assert c.auto_scale_lr.base_batch_size == 1024 and c.optim_wrapper.optimizer.lr == 1e-3
    assert c.optim_wrapper.optimizer.weight_decay == 0.05 and c.optim_wrapper.clip_grad.max_norm == 1.0
    assert c.optim_wrapper.paramwise_cfg.norm_decay_mult == 0 and c.optim_wrapper.paramwise_cfg.bias_decay_mult == 0
    assert c.model.backbone.drop_path_rate == 0.4 and c.model.head.loss.label_smooth_val == 0.1
    assert [a['type'] for a in c.model.train_cfg.augments] == ['Mixup', 'CutMix']
    test_ops = {t['type']: t for t in c.test_pipeline}
    assert test_ops['ResizeEdge']['scale'] == 256 and test_ops['ResizeEdge']['interpolation'] == 'bicubic'
    assert test_ops['CenterCrop']['crop_size'] == 224
    assert c.train_dataloader.dataset.type == 'CustomDataset' and c.train_dataloader.dataset.data_prefix == 'train'


def test_mmpretrain_davit_converts_to_same_features(seed):
    """mmpretrain's DaViT pads its stem 'same'-adaptively, unlike the official model; with its stem padding set to 3
    (the official layout its checkpoints were converted from), its weights converted into ours give the same maps."""
    from mmpretrain.models.backbones.davit import DaViT as MMPDaViT
    from davit_backbone import convert_state_dict
    from helpers import dense_davit
    ref = randomize_norms(MMPDaViT(arch='t', out_indices=(0, 1, 2, 3), drop_path_rate=0.0))
    ref.eval()  # mmpretrain's train() returns None, so no chaining
    ref.patch_embed.adaptive_padding = None
    ref.patch_embed.projection.padding = (3, 3)
    sd, fmt = convert_state_dict({'state_dict': {'backbone.' + k: v for k, v in ref.state_dict().items()}},
                                 return_format=True)
    assert fmt == 'mmpretrain'
    ours = dense_davit().eval()
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(ours.forward_dense(x), ref(x)):
            assert a.shape == b.shape and (a - b).abs().max() < 1e-4


def test_davit_type_resolves_in_every_scope():
    from mmengine.registry import MODELS as ROOT_MODELS
    import mmcls_davit, mmdet_davit, mmseg_davit  # noqa: F401,E401
    from mmdavit import DaViT, DaViTMMPretrain
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    for reg in (DET, SEG):
        assert reg.get('DaViT') is DaViT
    for reg in (DET, SEG, CLS):
        assert reg.get('mmdavit.DaViT') is DaViT
    assert CLS.get('DaViT') is DaViTMMPretrain  # mmpretrain's conventions in mmpretrain's scope
    from mmpretrain.models.backbones.davit import DaViT as MMPretrainOwn
    assert CLS.get('MMPretrainDaViT') is MMPretrainOwn  # mmpretrain's own stays reachable
    assert ROOT_MODELS.get('mmdavit.DaViT') is DaViT

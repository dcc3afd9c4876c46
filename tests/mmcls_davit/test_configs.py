"""Classification configs build, match the paper's numbers, and mmpretrain's DaViT converts into ours."""
import os

import numpy as np
import pytest
import torch

from helpers import ROOT, build_from_config, drop_path_rates, randomize_norms, weight_decay_of
from mmdavit.training.schedule import learning_rates


@pytest.mark.parametrize('arch,params_m,drop_path', [('tiny', 28.3, 0.1), ('small', 49.7, 0.2), ('base', 87.9, 0.4)])
def test_config_builds_with_paper_params_and_trains_a_step(arch, params_m, drop_path, seed):
    from mmpretrain.structures import DataSample
    cfg, model = build_from_config(os.path.join(ROOT, f'configs/mmcls/davit-{arch}_8xb128_in1k.py'))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m <= n < params_m + 0.1, n
    assert max(drop_path_rates(model)) == pytest.approx(drop_path)  # the paper's stochastic depth
    model.train()
    samples = [DataSample().set_gt_label(i) for i in (1, 7)]
    loss = model(torch.randn(2, 3, 64, 64), samples, mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.stem.conv.weight.grad is not None


def test_recipe_is_the_papers(tmp_path):
    """What mmengine builds from the config against the paper's ImageNet recipe (and the release's train.py, for
    what the paper leaves open), at 8 GPUs x 128 images: AdamW 1e-3 for batch 1024, 20 epochs of linear warmup
    (per iteration, from 1e-3 of the lr) then cosine decay to 1e-5 at epoch 300; weight decay 0.05 except on 1-D
    parameters and biases (the release's rule; its position-encoding convs do decay); gradients clipped to norm 1."""
    from mmengine.optim import build_optim_wrapper
    cfg, model = build_from_config(os.path.join(ROOT, 'configs/mmcls/davit-tiny_8xb128_in1k.py'))
    per_epoch = 25
    optimizer, curves = learning_rates(cfg, model, 8 * cfg.train_dataloader.batch_size, per_epoch, tmp_path)
    (lrs,) = curves.values()  # one rate for every parameter group
    it = np.arange(300 * per_epoch)
    epoch = it // per_epoch
    warmup = 1e-3 * (1e-3 + (1 - 1e-3) * it / (20 * per_epoch))
    cosine = 1e-5 + (1e-3 - 1e-5) * (1 + np.cos(np.pi * (epoch - 20) / 280)) / 2
    expected = np.where(epoch < 20, warmup, cosine)
    # mmengine's LinearLR reaches 1 at iteration end - 1: 1/500 (0.2%) apart at most
    assert lrs.shape == it.shape
    np.testing.assert_allclose(lrs, expected, rtol=2.5e-3)
    decays = weight_decay_of(optimizer, model)
    for name, p in model.named_parameters():
        assert decays[name] == (0.0 if p.ndim == 1 or name.endswith('.bias') else 0.05), name
    assert isinstance(optimizer, torch.optim.AdamW)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)  # a total norm of ~16000
    wrapper.step()
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])) == pytest.approx(1.0, rel=1e-3)


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

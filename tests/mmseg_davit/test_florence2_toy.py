"""The Florence-2 options (windows of 12, 3x3 downsampling, channel attention v2) through the OpenMMLab adapter:
toy detection and segmentation training runs start from a checkpoint in the Florence-2 release's layout (the whole
VLM: vision tower plus language-model tensors), given as the backbone's ``pretrained``, and train."""
import os

import pytest
import torch

from davit_backbone import DaViT
from helpers import build_from_config, python_tool, randomize_norms, scalars, to_florence2, toy_data

CONFIGS = {'ade': 'configs/toy/upernet_davit-fl_toy-ade.py', 'coco': 'configs/toy/retinanet_davit-fl_toy-coco.py'}
SMALL = {'ade': ['train_dataloader.dataset.indices=4', 'val_dataloader.dataset.indices=2',
                 'test_dataloader.dataset.indices=2', 'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                 'default_hooks.checkpoint.interval=3', 'param_scheduler=[]', 'default_hooks.logger.interval=1'],
         'coco': ['train_dataloader.dataset.indices=[0,1,2,3]', 'val_dataloader.dataset.indices=[0,1]',
                  'test_dataloader.dataset.indices=[0,1]', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                  'param_scheduler=[]', 'default_hooks.logger.interval=1']}


def _florence2_file(tmp_path, arch):
    torch.manual_seed(0)
    ref = randomize_norms(DaViT(arch, num_classes=0))
    sd = dict(to_florence2(ref.state_dict()), **{'language_model.lm_head.weight': torch.randn(4, 4),
                                                   'image_projection': torch.randn(256, 8)})
    path = tmp_path / 'pytorch_model.bin'
    torch.save(sd, path)
    return ref, str(path)


@pytest.mark.parametrize('kind', ['ade', 'coco'])
def test_toy_training_from_a_florence2_file(kind, tmp_path):
    toy_data(kind)
    cfg, model = build_from_config(CONFIGS[kind])
    bb = model.backbone
    assert bb.window_size == 12 and bb.down_kernel_size == 3 and bb.channel_attn_v2
    assert bb.stages[0].blocks[0].channel_block.attn.v2
    ref, path = _florence2_file(tmp_path, cfg.model.backbone.arch)
    wd = str(tmp_path / 'wd')
    r = python_tool('tools/train.py', CONFIGS[kind], '--work-dir', wd, '--cfg-options',
                    f'model.backbone.pretrained={path}', *SMALL[kind])
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert 'florence2-format DaViT checkpoint' in log and 'newly initialised' in log, log[-4000:]
    losses = [s['loss'] for s in scalars(wd) if 'loss' in s]
    assert losses and all(l == l and l < 1e4 for l in losses), losses  # finite: the train steps ran
    # the run started from the file: the trained stem moved from it only by a few small AdamW steps
    ckpt = [f for f in os.listdir(os.path.join(wd)) if f.endswith('.pth')]
    from helpers import saved_tensors
    trained = saved_tensors(os.path.join(wd, sorted(ckpt)[-1]))
    assert (trained['backbone.stem.conv.weight'] - ref.state_dict()['stem.conv.weight']).abs().max() < 0.05

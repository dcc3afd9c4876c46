"""mmseg's own entry points on our configs: its tools/train.py with load_from=<mmpretrain DaViT file> and its
MMSegInferencer with weights=<official file> put the file's weights into the segmentor's backbone."""
import pytest
import torch

from davit_backbone import DaViT
from helpers import in_layout, python_tool, randomize_norms, saved_tensors, task_tool, toy_data

CFG = 'configs/toy/upernet_davit-t_toy-ade.py'


def _reference(seed=0):
    torch.manual_seed(seed)
    return randomize_norms(DaViT('tiny', num_classes=1000))


def _assert_backbone(bb, ref):
    for k, v in ref.state_dict().items():
        if not k.startswith('head.'):
            assert torch.equal(bb[k], v), k


def test_mmseg_inferencer_weights_in_official_layout(tmp_path):
    from mmseg.apis import MMSegInferencer
    toy_data('ade')
    ref = _reference()
    path = tmp_path / 'official.pth'
    torch.save(in_layout(ref.state_dict(), 'official'), path)
    inferencer = MMSegInferencer(model=CFG, weights=str(path), device='cpu')
    _assert_backbone(inferencer.model.backbone.state_dict(), ref)
    out = inferencer(torch.randint(0, 255, (96, 128, 3), dtype=torch.uint8).numpy(), show=False)
    assert out['predictions'].shape == (96, 128)


@pytest.mark.slow
def test_mmseg_train_tool_load_from_mmpretrain_file(tmp_path):
    toy_data('ade')
    ref = _reference()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': in_layout(ref.state_dict(), 'mmpretrain')}, path)
    r = python_tool(task_tool('mmseg', 'train.py'), CFG, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    f'load_from={path}', 'train_cfg.max_iters=1', 'train_cfg.val_interval=100',
                    'optim_wrapper.optimizer.lr=0.0', 'train_dataloader.batch_size=2',
                    'default_hooks.checkpoint.interval=1', 'param_scheduler=[]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'mmpretrain-format DaViT checkpoint' in r.stdout + r.stderr
    _assert_backbone({k[len('backbone.'):]: v for k, v in saved_tensors(tmp_path / 'wd' / 'iter_1.pth').items()
                      if k.startswith('backbone.')}, ref)

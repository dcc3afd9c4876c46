"""mmdet's own entry points on our configs: its tools/train.py with load_from=<bare DaViT file> and its
DetInferencer with weights=<bare DaViT file> put the file's weights into the detector's backbone."""
import pytest
import torch

from davit_backbone import DaViT
from helpers import in_layout, python_tool, randomize_norms, saved_tensors, task_tool, toy_data

CFG = 'configs/toy/retinanet_davit-t_toy-coco.py'


def _reference(seed=0):
    torch.manual_seed(seed)
    return randomize_norms(DaViT('tiny', num_classes=1000))


def test_det_inferencer_weights_in_timm_layout(tmp_path):
    from mmdet.apis import DetInferencer
    toy_data('coco')
    ref = _reference()
    path = tmp_path / 'timm.pth'
    torch.save(in_layout(ref.state_dict(), 'timm'), path)
    inferencer = DetInferencer(model=CFG, weights=str(path), device='cpu', show_progress=False)
    bb = inferencer.model.backbone.state_dict()
    for k, v in ref.state_dict().items():
        if not k.startswith('head.'):  # a detector backbone has no classifier head
            assert torch.equal(bb[k], v), k
    out = inferencer(torch.randint(0, 255, (96, 128, 3), dtype=torch.uint8).numpy(), return_datasamples=False)
    assert 'bboxes' in out['predictions'][0]


@pytest.mark.slow
def test_mmdet_train_tool_load_from_official_file(tmp_path):
    toy_data('coco')
    ref = _reference()
    path = tmp_path / 'official.pth'
    torch.save({'model': in_layout(ref.state_dict(), 'official')}, path)
    r = python_tool(task_tool('mmdet', 'train.py'), CFG, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    f'load_from={path}', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
                    'optim_wrapper.optimizer.lr=0.0', 'train_dataloader.dataset.indices=[0,1]',
                    'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=1')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'official-format DaViT checkpoint' in r.stdout + r.stderr
    sd = saved_tensors(tmp_path / 'wd' / 'epoch_1.pth')
    for k, v in ref.state_dict().items():
        if not k.startswith('head.'):
            assert torch.equal(sd['backbone.' + k], v), k

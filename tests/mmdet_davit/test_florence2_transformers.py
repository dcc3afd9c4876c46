"""Florence-2 as transformers ships it natively, through the OpenMMLab loaders: mmengine's ``load_checkpoint`` (what
the Runner's ``load_from`` and a Pretrained ``init_cfg`` call) and mmdet's ``DetInferencer(weights=...)``, which read
paths with mmengine's ``CheckpointLoader``: files its own local loader (``torch.load``) cannot read go in."""
import pytest
import torch

from helpers import FLORENCE2_TOY_CFG, assert_tower, build_from_config, florence2_layouts, python_tool, toy_data



@pytest.fixture(scope='module')
def florence2(tmp_path_factory):
    return florence2_layouts(tmp_path_factory.mktemp('florence2'))


def test_every_layout_through_load_from_and_init_cfg(florence2):
    from mmengine.runner.checkpoint import load_checkpoint
    import mmdavit  # noqa: F401  registers the Hugging Face layouts with mmengine's CheckpointLoader
    tower, paths = florence2
    for name in ('whole.safetensors', 'florence2model.bin', 'backbone.safetensors', 'folder', 'shard index'):
        _, detector = build_from_config(FLORENCE2_TOY_CFG)
        load_checkpoint(detector, paths[name], map_location='cpu', strict=False)  # the Runner's load_from
        assert_tower(detector.state_dict(), tower, 'backbone.')
    for name in ('whole.safetensors', 'folder'):
        _, detector = build_from_config(FLORENCE2_TOY_CFG, **{'model.backbone.pretrained': paths[name]})
        detector.init_weights()  # as the Runner initialises a model whose backbone names a Pretrained checkpoint
        assert_tower(detector.backbone.state_dict(), tower)


def test_other_local_files_keep_mmengines_own_loader(tmp_path):
    """The scheme claims local paths but hands what is not a Hugging Face layout to mmengine's local loader, as
    before: its own error for a missing file, torch.load for a .pth."""
    from mmengine.runner.checkpoint import CheckpointLoader
    import mmdavit  # noqa: F401
    torch.save({'state_dict': {'w': torch.ones(2)}}, tmp_path / 'a.pth')
    assert torch.equal(CheckpointLoader.load_checkpoint(str(tmp_path / 'a.pth'))['state_dict']['w'], torch.ones(2))
    with pytest.raises(FileNotFoundError, match='can not be found'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'none.pth'))


def test_det_inferencer_weights_a_sharded_save_pretrained_folder(florence2):
    from mmdet.apis import DetInferencer
    tower, paths = florence2
    toy_data('coco')
    inferencer = DetInferencer(model=FLORENCE2_TOY_CFG, weights=paths['sharded folder'], device='cpu',
                               show_progress=False)
    assert_tower(inferencer.model.backbone.state_dict(), tower)


def test_train_tool_takes_a_folder_as_pretrained(florence2, tmp_path):
    """tools/train.py's early check and the Runner's initialisation both read a save_pretrained folder."""
    tower, paths = florence2
    toy_data('coco')
    r = python_tool('tools/train.py', FLORENCE2_TOY_CFG, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    f'model.backbone.pretrained={paths["folder"]}', 'train_cfg.max_epochs=1',
                    'train_cfg.val_interval=5', 'optim_wrapper.optimizer.lr=0.0',
                    'train_dataloader.dataset.indices=[0,1]', 'train_dataloader.batch_size=2',
                    'default_hooks.checkpoint.interval=1')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'florence2-transformers-format DaViT checkpoint' in r.stdout + r.stderr
    from helpers import saved_tensors
    assert_tower(saved_tensors(tmp_path / 'wd' / 'epoch_1.pth'), tower, 'backbone.')

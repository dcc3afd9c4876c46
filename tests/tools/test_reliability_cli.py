"""Bad input at every entry point: one line, exit code 2, nothing written; the launchers check it once, before
torchrun starts workers (which would each print it and end in torchrun's ChildFailedError)."""
import os

import pytest

from helpers import ROOT, python_tool, run_tool, toy_data


def _one_error_line(stderr):
    errors = [ln for ln in stderr.splitlines() if ln.startswith('error:')]
    return len(errors) == 1 and 'Traceback' not in stderr


def test_dist_train_checks_data_before_torchrun(tmp_path):
    """The issue's example: dist_train.sh on a config whose COCO folder is missing."""
    wd = tmp_path / 'wd'
    r = run_tool('bash', 'tools/dist_train.sh', 'configs/davit_retinanet_1x_coco.py', '2', '--work-dir', str(wd),
                 '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/')
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert _one_error_line(r.stderr) and 'dataset path not found' in r.stderr, r.stderr[-2000:]
    assert 'ChildFailedError' not in r.stderr and not wd.exists()


def test_dist_test_checks_checkpoint_before_torchrun(tmp_path):
    toy_data('imagenet')
    truncated = tmp_path / 'epoch_1.pth'
    truncated.write_bytes(b'PK\x03\x04 not a whole zip')
    wd = tmp_path / 'wd'
    r = run_tool('bash', 'tools/dist_test.sh', 'configs/toy/davit-t_toy-imagefolder.py', str(truncated), '2',
                 '--work-dir', str(wd))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert _one_error_line(r.stderr) and 'epoch_1.pth is incomplete or not a checkpoint' in r.stderr
    assert 'ChildFailedError' not in r.stderr and not wd.exists()


@pytest.mark.parametrize('args', [[], ['configs/toy/davit-t_toy-imagefolder.py', 'two']])
def test_dist_train_usage(args):
    r = run_tool('bash', 'tools/dist_train.sh', *args)
    assert r.returncode == 2 and _one_error_line(r.stderr) and 'usage' in r.stderr


def test_amp_without_gpu_is_one_line(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is valid here')
    toy_data('imagenet')
    r = python_tool('tools/train.py', 'configs/toy/davit-t_toy-imagefolder.py', '--amp', '--work-dir',
                    str(tmp_path / 'wd'))
    assert r.returncode == 2 and _one_error_line(r.stderr) and '--amp needs a GPU' in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'wd').exists()


def test_test_tool_on_truncated_or_foreign_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    import torch
    toy_data('imagenet')
    truncated = tmp_path / 'epoch_1.pth'
    truncated.write_bytes(b'PK\x03\x04 not a whole zip')
    foreign = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(2)}}, foreign)
    for path, says in [(truncated, 'epoch_1.pth is incomplete or not a checkpoint (PytorchStreamReader'),
                       (foreign, 'neither a checkpoint of this model nor a DaViT checkpoint')]:
        r = python_tool('tools/test.py', 'configs/toy/davit-t_toy-imagefolder.py', str(path), '--work-dir',
                        str(tmp_path / 'wd'))
        assert r.returncode == 2 and _one_error_line(r.stderr) and says in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / 'wd').exists()


def test_florence2_configs_backbone_pretrained_is_checked_before_anything_is_written(tmp_path):
    """configs/mmdet/mask-rcnn_davit-b-fl... names its weights as backbone.pretrained: the tools check that file
    early too (it used to be found missing only once the Runner had made its work dir)."""
    import _cli
    import _config
    cfg = _config.load_config(os.path.join(ROOT, 'configs/mmdet/mask-rcnn_davit-b-fl_fpn_1x_coco.py'),
                              {'model.backbone.pretrained': str(tmp_path / 'absent.bin')}, str(tmp_path / 'wd'))
    assert cfg.model.backbone.init_cfg.checkpoint == str(tmp_path / 'absent.bin')
    with pytest.raises(_cli.UserError, match='absent.bin'):
        _config.check_pretrained(cfg)
    assert not (tmp_path / 'wd').exists()


def test_a_class_name_missing_from_the_annotation_file_stops_train_and_test(tmp_path):
    """A typo in metainfo.classes used to train to the end without that class and fail in the COCO evaluator."""
    toy_data('coco')
    wd = tmp_path / 'wd'
    option = "train_dataloader.dataset.metainfo.classes=['circle','sqaure','triangle']"
    r = python_tool('tools/train.py', 'configs/toy/retinanet_davit-t_toy-coco.py', '--work-dir', str(wd),
                    '--cfg-options', option)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert _one_error_line(r.stderr) and "class 'sqaure'" in r.stderr and "did you mean 'square'" in r.stderr
    assert not wd.exists()


def test_segmentation_labels_and_reduce_zero_label_are_checked_before_anything_is_written(tmp_path):
    """mmseg asserts on the mismatch when it loads the first map, with a message that does not say what to set."""
    toy_data('ade')
    wd = tmp_path / 'wd'
    r = python_tool('tools/train.py', 'configs/toy/upernet_davit-t_toy-ade.py', '--work-dir', str(wd),
                    '--cfg-options', 'train_dataloader.dataset.reduce_zero_label=False')
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert _one_error_line(r.stderr) and 'reduce_zero_label=False but its pipeline' in r.stderr
    assert 'set both to True if 0 means "no label"' in r.stderr and not wd.exists()


@pytest.mark.slow
def test_past_the_limit_of_unreadable_images_the_run_stops_with_one_line(tmp_path):
    """A truncated JPEG with corrupt_images.max_skipped=0. (Training on with an unreadable image, and evaluation
    without it: tests/docs/test_custom_dataset.py; every rank alike: tests/mmdavit/data/test_unreadable_images.py.)"""
    data = tmp_path / 'coco'
    r = python_tool('tools/make_toy_data.py', 'coco', str(data), '--n-train', '2', '--n-val', '1', '--seed', '2')
    assert r.returncode == 0, r.stderr
    with open(data / 'train2017' / '000001.jpg', 'r+b') as f:
        f.truncate(200)
    r = python_tool('tools/train.py', 'configs/toy/mask-rcnn_davit-t_toy-coco-quick.py', '--work-dir',
                    str(tmp_path / 'wd'), '--cfg-options', f'train_dataloader.dataset.data_root={data}/',
                    f'val_dataloader.dataset.data_root={data}/',
                    f'val_evaluator.ann_file={data}/annotations/instances_val2017.json', 'corrupt_images.max_skipped=0')
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert _one_error_line(r.stderr) and 'more than the 0 allowed (corrupt_images.max_skipped)' in r.stderr
    assert 'then train again (no checkpoint was written yet)' in r.stderr


def test_a_config_whose_base_is_not_found_names_it(tmp_path):
    """A config copied out of the checkout: mmengine's FileNotFoundError names no file (26-line traceback)."""
    cfg = tmp_path / 'mine' / 'det.py'
    cfg.parent.mkdir()
    cfg.write_text("_base_ = '../mmdet/mask-rcnn_davit-t_fpn_1x_coco.py'\n")
    r = python_tool('tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'wd'))
    assert r.returncode == 2 and _one_error_line(r.stderr), r.stderr[-2000:]
    assert "inherits '../mmdet/mask-rcnn_davit-t_fpn_1x_coco.py', which is not at" in r.stderr
    assert "keep your configs under this checkout's configs/" in r.stderr and not (tmp_path / 'wd').exists()

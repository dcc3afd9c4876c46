"""The Florence-2 options through the OpenMMLab adapter, segmentation: a toy UPerNet run starts from a checkpoint in
the Florence-2 release's layout given as the backbone's ``pretrained``, and trains."""
from helpers import check_training_from_florence2_file, toy_data

SMALL = ['train_dataloader.dataset.indices=4', 'val_dataloader.dataset.indices=2', 'test_dataloader.dataset.indices=2',
         'train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
         'param_scheduler=[]', 'default_hooks.logger.interval=1']


def test_toy_training_from_a_florence2_file(tmp_path):
    toy_data('ade')
    check_training_from_florence2_file('configs/toy/upernet_davit-fl_toy-ade.py', SMALL, tmp_path)

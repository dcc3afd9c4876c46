"""The Florence-2 options through the OpenMMLab adapter, detection: a toy RetinaNet run starts from a checkpoint in
the Florence-2 release's layout given as the backbone's ``pretrained``, and trains."""
from helpers import check_training_from_florence2_file, toy_data

SMALL = ['train_dataloader.dataset.indices=[0,1,2,3]', 'val_dataloader.dataset.indices=[0,1]',
         'test_dataloader.dataset.indices=[0,1]', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
         'param_scheduler=[]', 'default_hooks.logger.interval=1']


def test_toy_training_from_a_florence2_file(tmp_path):
    toy_data('coco')
    check_training_from_florence2_file('configs/toy/retinanet_davit-fl_toy-coco.py', SMALL, tmp_path)

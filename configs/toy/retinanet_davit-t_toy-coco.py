# DaViT-T RetinaNet on the toy COCO set (boxes only).
_base_ = ['../mmdet/_base_/models/retinanet_davit-t_fpn.py', './_base_/toy_coco.py', './_base_/toy_schedule.py']

model = dict(backbone=dict(drop_path_rate=0.0), bbox_head=dict(num_classes=3))
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator

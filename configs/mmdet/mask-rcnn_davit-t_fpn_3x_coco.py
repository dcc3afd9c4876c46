_base_ = [
    './_base_/models/mask-rcnn_davit-t_fpn.py',
    './_base_/datasets/coco_instance_detr-aug.py',
    './_base_/schedules/adamw_3x.py',
    './_base_/default_runtime.py',
]
model = dict(backbone=dict(drop_path_rate=0.2))

_base_ = [
    './_base_/models/retinanet_davit-t_fpn.py',
    './_base_/datasets/coco_detection_detr-aug.py',
    './_base_/schedules/adamw_3x.py',
    './_base_/default_runtime.py',
]
model = dict(backbone=dict(drop_path_rate=0.2))

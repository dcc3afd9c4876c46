# DaViT-T Mask R-CNN on the generated toy COCO set: the demo job. The real model config with small images, the
# toy data and a short schedule, so it learns on 2 CPU cores in minutes.
_base_ = ['../mmdet/_base_/models/mask-rcnn_davit-t_fpn.py', './_base_/toy_coco.py', './_base_/toy_schedule.py']

model = dict(
    backbone=dict(drop_path_rate=0.0),
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

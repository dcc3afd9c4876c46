# Mask R-CNN with a DaViT-T backbone on mmdet's own Mask R-CNN base.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmdet_davit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        window_size=None,  # the arch's: 7, or 12 for the Florence-2 (_fl) and large_window12 archs
        with_cp=False,
        init_cfg=None),  # --cfg-options model.pretrained=PATH (or model.backbone.pretrained=PATH) loads weights
    neck=dict(in_channels=[96, 192, 384, 768]))

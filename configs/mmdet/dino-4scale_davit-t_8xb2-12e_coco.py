# DINO 4-scale 12 epochs on DaViT-T: mmdet's own DINO recipe (its R-50 config, inherited whole: 900 queries,
# denoising queries, DETR augmentation, AdamW 1e-4 with the backbone at 0.1 of it, lr step at epoch 11) with the
# backbone swapped. 4-scale: stages 1..3 (strides 8, 16, 32) through ChannelMapper, plus one extra stride-64 level.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mmdet_davit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DaViT',
        arch='tiny',
        out_indices=(1, 2, 3),
        # the value of this project's 1x DaViT-T detectors (and of the ImageNet recipe for T)
        drop_path_rate=0.1,
        window_size=None,  # the arch's: 7, or 12 for the Florence-2 (_fl) archs
        with_cp=False,
        init_cfg=None),  # --cfg-options model.pretrained=PATH (or model.backbone.pretrained=PATH) loads weights
    neck=dict(in_channels=[192, 384, 768]))

# the crash-safe checkpoint hook under mmdet's own tools/train.py too (this project's detection runtime, which the
# DINO recipe cannot list beside mmdet's own default_runtime)
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

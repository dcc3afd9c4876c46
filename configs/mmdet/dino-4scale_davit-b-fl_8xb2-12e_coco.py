# DINO 4-scale 12 epochs on Florence-2-base's vision tower (DaViT-B layout: windows of 12, 3x3 downsampling convs,
# channel attention v2), initialised from the Florence-2 release. Get the transformers-native checkpoint first (see
# docs/florence2.md):
#   hf download florence-community/Florence-2-base model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-base
# The folder is given as is: the loader keeps the vision tower and reports the output norms norm1..3 as newly
# initialised (the tower has none).
_base_ = './dino-4scale_davit-t_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        arch='base_fl',
        # as mask-rcnn_davit-b-fl_fpn_1x_coco.py: a strongly pre-trained tower fine-tuned for 12 epochs
        drop_path_rate=0.2,
        pretrained='checkpoints/Florence-2-base'),
    neck=dict(in_channels=[256, 512, 1024]))

# mask-rcnn_davit-b-fl_fpn_1x_coco.py's stage-wise learning-rate decay 0.8, on top of the DINO recipe's 0.1 for the
# backbone (DETR-style detectors are trained with a backbone that moves slowly): stage 3 at 0.1 x 0.8 of the lr, the
# stem at 0.1 x 0.8^5. The output norms backbone.norm{i} are newly initialised: full lr, no weight decay. mmengine
# applies the longest matching key only, so these override the recipe's 'backbone' key, and norms inside the stages
# take their stage's lr.
_decay = 0.8
_backbone = 0.1
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'backbone.stem': dict(lr_mult=_backbone * _decay ** 5),
    'backbone.stages.0': dict(lr_mult=_backbone * _decay ** 4),
    'backbone.stages.1': dict(lr_mult=_backbone * _decay ** 3),
    'backbone.stages.2': dict(lr_mult=_backbone * _decay ** 2),
    'backbone.stages.3': dict(lr_mult=_backbone * _decay),
    'backbone.norm': dict(lr_mult=1., decay_mult=0.),
}))

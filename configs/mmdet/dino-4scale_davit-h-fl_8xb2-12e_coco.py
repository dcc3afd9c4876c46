# DINO 4-scale 12 epochs on Florence-2-large's vision tower (DaViT-H layout: 256/512/1024/2048 channels, ~360M
# parameters, windows of 12, 3x3 downsampling convs, channel attention v2), initialised from the Florence-2 release:
#   hf download florence-community/Florence-2-large model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-large
# The -b-fl recipe (stage-wise lr decay 0.8 under the backbone's 0.1) with the wider tower.
_base_ = './dino-4scale_davit-b-fl_8xb2-12e_coco.py'

model = dict(
    backbone=dict(
        arch='huge_fl',
        # 0.1 above -b-fl, as mask-rcnn_davit-h-fl_fpn_1x_coco.py: the same 12 blocks with 4x the parameters
        drop_path_rate=0.3,
        # the tower's activations at up to 800x1333 dominate a training step's memory; recomputing each block in the
        # backward trades backbone time for them
        with_cp=True,
        pretrained='checkpoints/Florence-2-large'),
    neck=dict(in_channels=[512, 1024, 2048]))

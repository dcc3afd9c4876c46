# Mask R-CNN 1x on Florence-2-large's vision tower (DaViT-H layout: 256/512/1024/2048 channels, ~360M parameters,
# windows of 12, 3x3 downsampling convs, channel attention v2), initialised from the Florence-2 release. Get the
# transformers-native checkpoint first (see docs/florence2.md):
#   hf download florence-community/Florence-2-large model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-large
# The -b-fl recipe (stage-wise lr decay 0.8, norms) with the wider tower; the folder is given as is and the
# loader keeps the vision tower only, reporting the output norms norm0..3 as newly initialised.
_base_ = './mask-rcnn_davit-b-fl_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='huge_fl',
        # 0.3, 0.1 above -b-fl: the same 12 blocks with 4x the parameters fine-tuned on the same 118k images
        drop_path_rate=0.3,
        # checkpointing: a training step at 800x1344, 1 image, holds 8.2 GiB of tensors with it (weights, AdamW
        # states, gradients, activations; CPU allocation replay, 2026-12-06) and about 4 GiB more per image without
        # it: the recipe's 2 images per GPU stay near 11 GiB, well inside a 24 GB GPU, instead of about 19
        with_cp=True,
        pretrained='checkpoints/Florence-2-large'),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

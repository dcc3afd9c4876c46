# Mask R-CNN 1x on Florence-2-base's vision tower (DaViT-B layout: windows of 12, 3x3 downsampling convs, channel
# attention v2), initialised from the Florence-2 release. Get the file first (see docs/florence2.md):
#   hf download florence-community/Florence-2-base model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-base
# The folder is given as is (model.safetensors, a shard index or a remote-code pytorch_model.bin in it): the loader
# takes the vision tower, drops the language model and projector (recognised as Florence-2's), and reports the four
# output norms norm0..3 as newly initialised (the tower has none).
_base_ = './mask-rcnn_davit-t_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='base_fl',
        # 0.2, below ECCV DaViT-B's 0.3: the tower starts from FLD-5B pre-training (126M images) and is fine-tuned
        # for 12 epochs only; stochastic depth is regularisation for learning, less needed to adapt
        drop_path_rate=0.2,
        pretrained='checkpoints/Florence-2-base'),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# Stage-wise learning-rate decay 0.8 (deeper stages nearer the full lr): the pre-trained low-level stages should move
# least, the new FPN/heads and the newly initialised output norms (backbone.norm{i}) learn at the full lr. mmengine
# applies the longest matching key only, so norms inside the stages take their stage's lr and keep weight decay.
_decay = 0.8
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'backbone.stem': dict(lr_mult=_decay ** 5),
    'backbone.stages.0': dict(lr_mult=_decay ** 4),
    'backbone.stages.1': dict(lr_mult=_decay ** 3),
    'backbone.stages.2': dict(lr_mult=_decay ** 2),
    'backbone.stages.3': dict(lr_mult=_decay),
    'backbone.norm': dict(lr_mult=1., decay_mult=0.),
}))

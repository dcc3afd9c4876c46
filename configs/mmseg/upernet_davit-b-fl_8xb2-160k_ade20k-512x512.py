# UPerNet 160k on Florence-2-base's vision tower (DaViT-B layout: windows of 12, 3x3 downsampling convs, channel
# attention v2), initialised from the Florence-2 release. Get the file first (see docs/florence2.md):
#   hf download florence-community/Florence-2-base model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-base
# The loader takes the vision tower from the whole VLM in that folder and reports norm0..3 as newly initialised.
_base_ = './upernet_davit-t_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='base_fl',
        # 0.3, below ECCV DaViT-B's 0.4: a strongly pre-trained tower needs less stochastic depth to fine-tune;
        # 160k iterations on ADE20K's 20k images is still long enough to over-fit without any
        drop_path_rate=0.3,
        pretrained='checkpoints/Florence-2-base'),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))

# Stage-wise learning-rate decay 0.8 on top of the base recipe (AdamW 6e-5, poly): early pre-trained stages move
# least, the new heads and the newly initialised output norms at the full lr; no weight decay on norms named 'norm'
# (mmseg's Swin recipe, for a fine-tune). The longest matching key wins in mmengine, so 'norm' covers the heads and
# backbone.norm{i}; norms inside the stages take their stage's lr and keep weight decay.
_decay = 0.8
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'norm': dict(decay_mult=0.),
    'backbone.stem': dict(lr_mult=_decay ** 5),
    'backbone.stages.0': dict(lr_mult=_decay ** 4),
    'backbone.stages.1': dict(lr_mult=_decay ** 3),
    'backbone.stages.2': dict(lr_mult=_decay ** 2),
    'backbone.stages.3': dict(lr_mult=_decay),
    'backbone.norm': dict(lr_mult=1., decay_mult=0.),
}))

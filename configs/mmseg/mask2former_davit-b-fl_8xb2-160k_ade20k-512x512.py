# Mask2Former 160k on Florence-2-base's vision tower (DaViT-B layout: windows of 12, 3x3 downsampling convs, channel
# attention v2), initialised from the Florence-2 release. Get the transformers-native checkpoint first (see
# docs/florence2.md):
#   hf download florence-community/Florence-2-base model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-base
# The loader keeps the vision tower of the whole VLM file and reports norm0..3 as newly initialised.
_base_ = './mask2former_davit-t_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='base_fl',
        # as upernet_davit-b-fl: below ECCV DaViT-B's 0.4, a strongly pre-trained tower needs less stochastic depth
        drop_path_rate=0.3,
        pretrained='checkpoints/Florence-2-base'),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))

# upernet_davit-b-fl's stage-wise learning-rate decay 0.8, on top of the Mask2Former recipe's 0.1 for the backbone:
# stage 3 at 0.1 x 0.8 of the lr, the stem at 0.1 x 0.8^5; the newly initialised output norms backbone.norm{i} at the
# full lr without weight decay. The longest matching key wins in mmengine, so norms inside the stages take their
# stage's lr and keep weight decay (as the -fl UPerNet and Mask R-CNN); the recipe's norm_decay_mult still frees the
# head's norms. The T config's per-norm keys are dropped (they would flatten the decay for the blocks' norms).
_decay = 0.8
_backbone = 0.1
_embed = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(
    _delete_=True,
    query_embed=_embed,
    query_feat=_embed,
    level_embed=_embed,
    **{
        'backbone.stem': dict(lr_mult=_backbone * _decay ** 5),
        'backbone.stages.0': dict(lr_mult=_backbone * _decay ** 4),
        'backbone.stages.1': dict(lr_mult=_backbone * _decay ** 3),
        'backbone.stages.2': dict(lr_mult=_backbone * _decay ** 2),
        'backbone.stages.3': dict(lr_mult=_backbone * _decay),
        'backbone.norm': dict(lr_mult=1., decay_mult=0.),
    })))

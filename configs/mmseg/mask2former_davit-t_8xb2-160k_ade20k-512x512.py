# Mask2Former 160k on ADE20K (512x512 crops) with DaViT-T: mmseg's own Mask2Former recipe (its R-50 config, inherited
# whole: 100 queries, a 6-layer deformable pixel decoder, 9 decoder layers, AdamW 1e-4 with the backbone at 0.1 of it,
# poly 0.9) with the backbone swapped, and its Swin-T config's optimiser rules written for DaViT's parameter names.
# The head and its losses are mmdet's (mmdet.models, imported by the recipe); DaViT registers into mmseg's registry.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdet.models', 'mmseg_davit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # mmseg's Swin-T Mask2Former and this project's UPerNet-T
        window_size=None,  # the arch's: 7, or 12 for the Florence-2 (_fl) archs
        with_cp=False,
        init_cfg=None),  # --cfg-options model.pretrained=PATH (or model.backbone.pretrained=PATH) loads weights
    decode_head=dict(in_channels=[96, 192, 384, 768]))

# mmseg's Swin-T Mask2Former: the backbone at 0.1 of the lr, its norms at 0.1 without weight decay, the queries' and
# levels' embeddings without weight decay. A matching custom key overrides norm_decay_mult, hence the norms by name:
# these suffixes only occur in DaViT (spatial/channel blocks' norm1/norm2, stem and downsampling norms, output norms).
_backbone_norm = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'spatial_block.norm': _backbone_norm,
    'channel_block.norm': _backbone_norm,
    'stem.norm': _backbone_norm,
    'downsample.norm': _backbone_norm,
    'backbone.norm': _backbone_norm,
}))
# the crash-safe checkpoint hook with the recipe's arguments (every 5k iterations, best mIoU kept)
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

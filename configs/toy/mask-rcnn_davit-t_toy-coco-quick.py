# The default demo (make demo): DaViT-T Mask R-CNN learning the toy COCO shapes in a few minutes on 2 CPU cores.
# The backbone is the full DaViT-T of mask-rcnn_davit-t_toy-coco.py (the 24-epoch job, make demo-long); what
# changes is where the CPU time went (one training step of 4 images cost ~2.7 CPU-s there, ~1.0 here):
# - 112x112 inputs padded to a multiple of 16, not 32: 112 = 7 x 16, so DaViT's 7x7 windows tile strides 4, 8 and
#   16 exactly (at 128 a third of the window tokens at those strides were padding);
# - light heads for 3 classes of plain shapes: FPN, RPN and RoI heads 128 channels wide instead of 256, a 256-wide
#   box head instead of 1024 (its first layer alone held 12.8M of the 48M parameters), 2 mask convs instead of 4;
# - fewer RoIs: 32 sampled per image (the images hold 1-3 shapes), 100 proposals kept;
# - one cycle: a short linear warmup, then cosine to zero, at a higher peak lr with gradient clipping.
_base_ = './mask-rcnn_davit-t_toy-coco.py'

img_scale = (112, 112)
max_epochs = 16
ch = 128

model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    neck=dict(out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(in_channels=ch, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(num_convs=2, in_channels=ch, conv_out_channels=ch)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=50), rcnn=dict(max_per_img=10)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# fused: one kernel for the whole AdamW update (a tenth of each step's time on CPU with the per-tensor loop)
optim_wrapper = dict(optimizer=dict(lr=6e-4, fused=True), clip_grad=dict(max_norm=10.0))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
# seeded so that a newcomer gets the figures of docs/get_started.md (they still move with thread count and machine)
randomness = dict(seed=0)

# DaViT-T Mask2Former on the generated toy ADE set (tools/make_toy_data.py ade data/toy_ade), on CPU: the real config
# (mmseg's Mask2Former recipe on the full DaViT-T) with the toy data of upernet_davit-t_toy-ade.py and a head shrunk
# for 4 classes of plain shapes, so that a run fits a CPU budget: 64 channels instead of 256, 1 pixel-decoder encoder
# layer instead of 6, 3 decoder layers instead of 9 (one round over the 3 feature levels), 20 queries instead of 100,
# 1024 sampled points per mask in the loss instead of 12544 (a 128x128 crop has 16384 pixels).
_base_ = '../mmseg/mask2former_davit-t_8xb2-160k_ade20k-512x512.py'

data_root = 'data/toy_ade'
crop_size = (128, 128)
num_classes = 4
dims = 64
ffn = 128
_attn = dict(embed_dims=dims, num_heads=4)
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[[120, 120, 120], [220, 60, 60], [60, 180, 75], [60, 90, 220]])
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.0),
    decode_head=dict(
        num_classes=num_classes,
        feat_channels=dims,
        out_channels=dims,
        num_queries=20,
        pixel_decoder=dict(
            encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=_attn,
                                                      ffn_cfg=dict(embed_dims=dims, feedforward_channels=ffn))),
            positional_encoding=dict(num_feats=dims // 2)),
        positional_encoding=dict(num_feats=dims // 2),
        transformer_decoder=dict(num_layers=3, layer_cfg=dict(
            self_attn_cfg=_attn, cross_attn_cfg=_attn, ffn_cfg=dict(embed_dims=dims, feedforward_channels=ffn))),
        # the recipe's weights: 1 for each class, 0.1 for "no object"
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=1024)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# ADE20KDataset only accepts subsets of its 150 names; BaseSegDataset reads the same layout with our own classes
_ds = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, reduce_zero_label=True,
           img_suffix='.jpg', seg_map_suffix='.png')
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(_ds, data_prefix=dict(img_path='images/training',
                                                           seg_map_path='annotations/training'),
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(_ds, data_prefix=dict(img_path='images/validation',
                                                         seg_map_path='annotations/validation'),
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=30, end=300, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=300, max_keep_ckpts=1, save_best=None))

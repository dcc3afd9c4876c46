# DaViT-T UPerNet on the generated toy ADE set (tools/make_toy_data.py ade data/toy_ade), on CPU.
# BN instead of SyncBN (a single CPU process has nothing to sync with), small crops, a short schedule.
_base_ = '../mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py'

data_root = 'data/toy_ade'
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[[120, 120, 120], [220, 60, 60], [60, 180, 75], [60, 90, 220]])
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.0),
    decode_head=dict(num_classes=4, channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=4, channels=64, norm_cfg=norm_cfg))

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
# --aug-test: the release's rule (base config) around this set's test size (256, 128)
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(256 * r), int(128 * r)), keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]])]
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
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=300, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=300, max_keep_ckpts=1))

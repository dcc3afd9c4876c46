# DaViT-T classifier on the generated toy ImageFolder set (tools/make_toy_data.py imagenet data/toy_imagenet).
_base_ = '../mmcls/davit-tiny_8xb128_in1k.py'

data_root = 'data/toy_imagenet'
# ImageFolder order (sorted folder names); named here so that tools/infer.py has class names without the data
metainfo = dict(classes=('circle', 'square', 'triangle'))
data_preprocessor = dict(num_classes=3)  # mmpretrain one-hot-encodes labels (label smoothing) to this size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0), backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

model = dict(backbone=dict(drop_path_rate=0.0), head=dict(num_classes=3, topk=(1,)),
             train_cfg=dict(augments=None))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(enable=False)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=10, by_epoch=True, begin=0, end=10)]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=10)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=10, max_keep_ckpts=1))

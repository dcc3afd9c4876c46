# DaViT-T DINO on the toy COCO set (boxes only): the real config (mmdet's DINO recipe on the full DaViT-T) with the
# toy data and a transformer shrunk for 3 classes of 1-3 plain shapes per 128x128 image, so that a run fits a CPU
# budget: 2 encoder and 2 decoder layers instead of 6, feed-forward layers 512 wide instead of 2048, 30 queries
# instead of 900 (and 10 denoising queries instead of 100). The width stays 256: mmdet's DINO decoder encodes its
# reference points with 128 sine features per coordinate whatever embed_dims is. The data and schedule are those of
# configs/toy/_base_/, written out here because mmengine refuses a key that two bases both set (the DINO recipe sets
# them all).
_base_ = '../mmdet/dino-4scale_davit-t_8xb2-12e_coco.py'

ffn = 512
num_queries = 30
model = dict(
    num_queries=num_queries,
    backbone=dict(drop_path_rate=0.0),
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=ffn))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=ffn))),
    bbox_head=dict(num_classes=3),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=num_queries))

# configs/toy/_base_/toy_coco.py's data, boxes only
data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'), palette=[(220, 60, 60), (60, 180, 75), (60, 90, 220)])
img_scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', metric='bbox')
test_evaluator = val_evaluator

# configs/toy/_base_/toy_schedule.py's 24 epochs on the DINO recipe's optimiser (AdamW, gradient clipping, the
# backbone at 0.1 of the lr), at the toy's higher lr and with its warmup
max_epochs = 24
optim_wrapper = dict(optimizer=dict(lr=4e-4))
auto_scale_lr = dict(enable=False)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=60),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[18, 22], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

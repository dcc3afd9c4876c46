# The paper's ImageNet-1K recipe on mmpretrain's Swin recipe files (same family: AdamW, cosine, RandAugment, Mixup/CutMix,
# random erasing, bicubic resize 256 -> centre crop 224 at test, i.e. crop ratio 0.875 as the official release
# evaluated; timm's davit_* pretrained cfg says 0.95, which reads ~0.1-0.2 top-1 differently).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmcls_davit'], allow_failed_imports=False)

# timm / the original release's data layout: DATASET_DIR/{train,val}/<class>/*.jpg, no meta files.
data_root = 'data/imagenet'
_train_ds = dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline={{_base_.train_pipeline}})
_val_ds = dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
               pipeline={{_base_.test_pipeline}})
train_dataloader = dict(batch_size=128, dataset=_train_ds)
val_dataloader = dict(batch_size=128, dataset=_val_ds)
test_dataloader = val_dataloader

model = dict(
    type='ImageClassifier',
    # out_type='pre_logits': global pool then LayerNorm inside the backbone, the official classifier's order;
    # the head is only the Linear, so official/timm checkpoints load exactly (the backbone's load hook converts
    # them, handing the Linear to the head). pad_small_map=True: maps smaller than a window are padded, as the
    # official model does (in mmpretrain's scope type='DaViT' takes mmpretrain's defaults, which shrink the window).
    backbone=dict(type='DaViT', arch='tiny', out_type='pre_logits', pad_small_map=True, drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# AdamW lr 1e-3 at batch 1024 (scaled by auto_scale_lr), wd 0.05 except on 1-D parameters (norms) and biases: the
# release's train.py rule (its line that also spared the ConvPosEnc convs is commented out, and mmpretrain's Swin
# recipe keys, position embeddings and bias tables, name nothing in DaViT); gradient clipping at 1.0 as the release
# (Swin's base clips at 5.0).
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0))
auto_scale_lr = dict(base_batch_size=1024, enable=True)

# mmdavit's CheckpointHook, same arguments as mmpretrain's: a kill at any moment leaves a complete checkpoint and a
# last_checkpoint naming it; --resume restores the random generators too (docs/reliability.md)
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

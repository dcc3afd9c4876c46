# A short CPU schedule on the paper's optimizer (AdamW): 24 epochs, warmup, steps at 18 and 22, no lr scaling.
_base_ = ['../../mmdet/_base_/schedules/adamw_1x.py', '../../mmdet/_base_/default_runtime.py']

max_epochs = 24
optim_wrapper = dict(optimizer=dict(lr=4e-4))
auto_scale_lr = dict(enable=False)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=60),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[18, 22], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

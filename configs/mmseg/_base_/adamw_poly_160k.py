# The paper's ADE20K schedule: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01; 1500 iterations of linear warmup
# from 1e-6 of the lr, then poly decay (power 1.0) to 0 at 160k. Batch 16 = 8 GPUs x 2.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # as mmseg's Swin/UPerNet recipe: no decay on norms
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# mmdavit's CheckpointHook, same arguments as mmseg's (every 16k iterations): a kill at any moment leaves a complete
# checkpoint and a last_checkpoint naming it; --resume restores the random generators too (README, Reliability)
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

# The ADE20K schedule the release trained with (its mmseg 0.x config, mmcv 1.x semantics): AdamW lr 6e-5, betas
# (0.9, 0.999), weight decay 0.01 on every parameter (its no-decay-on-norms line is commented out); poly decay
# (power 1.0) from iteration 0 to 0 at 160k, multiplied by a linear warmup from 1e-6 of it over the first 1500
# iterations. Batch 16 = 8 GPUs x 2. mmseg's own Swin recipe differs on both points (norms undecayed, poly from 1500).
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# mmdavit's CheckpointHook, same arguments as mmseg's (every 16k iterations): a kill at any moment leaves a complete
# checkpoint and a last_checkpoint naming it; --resume restores the random generators too (docs/reliability.md)
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

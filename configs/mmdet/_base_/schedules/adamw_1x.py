# 12 epochs, lr steps at 8 and 11, AdamW as the paper. Batch 16 = 8 GPUs x 2 images; auto_scale_lr rescales the lr
# linearly for another total batch (GPUs x batch_size).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=True, base_batch_size=16)

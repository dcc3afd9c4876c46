# mmdet's runtime with the crash-safe checkpoint hook (temporary file, fsync, rename; old checkpoints removed only
# after the new one is complete), so that mmdet's own tools/train.py gets it too, not only ours.
_base_ = 'mmdet::_base_/default_runtime.py'
default_hooks = dict(checkpoint=dict(type='mmdavit.AtomicCheckpointHook'))

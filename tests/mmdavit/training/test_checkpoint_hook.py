"""The pieces of crash-safe checkpointing, without training: atomic writes, the resume search, every config getting
the hook, and what a checkpoint holds for an exact resume (all weights-only loadable)."""
import os

import pytest
import torch

from helpers import ROOT, config_files


def _ckpt(path, epoch, it=None, **extra):
    torch.save(dict(meta=dict(epoch=epoch, iter=it if it is not None else 2 * epoch), state_dict={}, **extra), path)


def test_atomic_write_leaves_old_file_when_the_write_dies(tmp_path, monkeypatch):
    import mmdavit.training.atomic_io as hooks
    target = tmp_path / 'last_checkpoint'
    hooks.atomic_write(str(target), 'old')

    def dies_halfway(f, data):
        f.write(data[:3])
        raise KeyboardInterrupt  # stands for the process dying mid-write (a BaseException, not an Exception)

    monkeypatch.setattr(hooks, '_write_all', dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        hooks.atomic_write(str(target), 'new contents')
    assert target.read_text() == 'old' and os.listdir(tmp_path) == ['last_checkpoint']


def test_resume_search_prefers_last_checkpoint_then_newest_loadable(tmp_path):
    from mmdavit.training.resume import ResumeError, find_resume_checkpoint
    assert find_resume_checkpoint(str(tmp_path))[0] is None
    for e in (1, 2, 10):
        _ckpt(tmp_path / f'epoch_{e}.pth', e)
    (tmp_path / 'epoch_11.pth.tmp').write_bytes(b'partial')  # never a candidate
    (tmp_path / 'best_acc_epoch_12.pth').write_bytes(b'x')   # neither: no optimizer state
    # numbers, not names: epoch_10 is newer than epoch_2
    assert find_resume_checkpoint(str(tmp_path))[0] == str(tmp_path / 'epoch_10.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    path, why = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_2.pth') and 'last_checkpoint names it' in why
    (tmp_path / 'last_checkpoint').write_text('')
    path, why = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_10.pth') and 'last_checkpoint is unusable' in why and 'is empty' in why
    (tmp_path / 'epoch_10.pth').write_bytes((tmp_path / 'epoch_10.pth').read_bytes()[:100])
    path, why = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'epoch_2.pth') and 'epoch_10.pth is incomplete' in why
    for e in (1, 2):
        (tmp_path / f'epoch_{e}.pth').write_bytes(b'')
    with pytest.raises(ResumeError) as err:
        find_resume_checkpoint(str(tmp_path))
    msg = str(err.value)
    assert '\n' not in msg and all(f'epoch_{e}.pth is incomplete' in msg for e in (1, 2, 10))


def test_weights_alone_are_not_resumable(tmp_path):
    from mmdavit.training.resume import ResumeError, check_resumable
    torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp_path / 'w.pth')
    with pytest.raises(ResumeError, match='no training state.*load_from='):
        check_resumable(str(tmp_path / 'w.pth'))


def test_resume_state_loads_weights_only(tmp_path):
    """What an exact resume needs beyond mmengine's own keys: every rank's generator states, and (with --amp)
    the loss scaler's state inside the optimizer's. Both must load with weights_only=True."""
    import mmdavit.training.rng as hooks
    from mmdavit.training.resume import check_resumable, load_checkpoint_file
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 11)
    scaler._growth_tracker = torch.tensor(7)  # noqa  as after 7 steps without overflow
    state = hooks.rng_state()
    _ckpt(tmp_path / 'epoch_3.pth', 3, rng_state=dict(ranks=[state, state]),
          optimizer=dict(state={}, param_groups=[], loss_scaler=scaler.state_dict()))
    assert check_resumable(str(tmp_path / 'epoch_3.pth')) == (3, 6)
    loaded = load_checkpoint_file(str(tmp_path / 'epoch_3.pth'))
    restored = torch.amp.GradScaler('cpu')
    restored.load_state_dict(loaded['optimizer']['loss_scaler'])
    assert restored.get_scale() == 2.0 ** 11 and restored._get_growth_tracker() == 7
    # the generator states round-trip: the same draws after restoring
    import random

    import numpy as np
    hooks.set_rng_state(loaded['rng_state']['ranks'][1])
    first = (torch.rand(3), np.random.rand(3), random.random())
    hooks.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


@pytest.mark.parametrize('path', [
    'configs/toy/mask-rcnn_davit-t_toy-coco.py', 'configs/toy/davit-t_toy-imagefolder.py',
    'configs/toy/upernet_davit-t_toy-ade.py', 'configs/mmdet/retinanet_davit-t_fpn_1x_coco.py',
    'configs/mmseg/upernet_davit-b_8xb2-160k_ade20k-512x512.py', 'configs/mmcls/davit-small_8xb128_in1k.py'])
def test_every_config_gets_the_atomic_hook_with_its_arguments(path):
    from mmengine.config import Config

    from mmdavit.training.checkpoint_hook import use_atomic_checkpoints
    plain = Config.fromfile(os.path.join(ROOT, path)).default_hooks.checkpoint
    cfg = Config.fromfile(os.path.join(ROOT, path))
    use_atomic_checkpoints(cfg)
    ours = cfg.default_hooks.checkpoint
    assert ours.pop('type') == 'mmdavit.AtomicCheckpointHook'
    plain.pop('type')
    assert ours == plain


@pytest.mark.parametrize('path', config_files('mmseg') + config_files('mmcls'))
def test_mmseg_and_mmcls_configs_name_it_for_other_tools(path):
    """mmseg's/mmpretrain's own tools/train.py build the hook the config names; mmdet's leaf configs list mmdet's
    default_runtime beside our bases, so only tools/train.py swaps it there (docs/reliability.md)."""
    from mmengine.config import Config
    from mmengine.registry import HOOKS, init_default_scope
    cfg = Config.fromfile(path)
    assert cfg.default_hooks.checkpoint.type == 'mmdavit.AtomicCheckpointHook'
    init_default_scope(cfg.default_scope)
    import mmdavit.training.checkpoint_hook
    assert isinstance(HOOKS.build(cfg.default_hooks.checkpoint), mmdavit.training.checkpoint_hook.AtomicCheckpointHook)


def test_hook_resume_search_for_other_entry_points(tmp_path):
    """mmseg's / mmpretrain's own train.py --resume sets runner._resume without a file: the hook picks the newest
    checkpoint that loads before mmengine would trust last_checkpoint blindly."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger

    from mmdavit.training.checkpoint_hook import AtomicCheckpointHook
    from mmdavit.training.resume import ResumeError
    _ckpt(tmp_path / 'iter_4.pth', 0, 4)
    (tmp_path / 'iter_6.pth').write_bytes(b'PK\x03\x04 truncated')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    runner = SimpleNamespace(_resume=True, _load_from=None, work_dir=str(tmp_path),
                             logger=MMLogger.get_instance('test_hook_resume_search'))
    AtomicCheckpointHook(interval=2, by_epoch=False).before_run(runner)
    assert runner._load_from == str(tmp_path / 'iter_4.pth')
    (tmp_path / 'iter_4.pth').write_bytes(b'')
    runner._load_from = None
    with pytest.raises(ResumeError, match='iter_4.pth is incomplete'):
        AtomicCheckpointHook(interval=2, by_epoch=False).before_run(runner)
    runner._resume, runner._load_from = False, None  # a plain run: nothing searched, nothing set
    AtomicCheckpointHook(interval=2, by_epoch=False).before_run(runner)
    assert runner._load_from is None

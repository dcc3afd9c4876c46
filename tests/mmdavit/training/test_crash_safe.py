"""kill -9 at any moment loses at most the work since the last complete checkpoint, and --resume continues exactly.

Each run trains a small DaViT classifier on the toy ImageFolder set (2 iterations an epoch, validation every epoch,
drop path on, random crops and flips: the torch, numpy and python generators all matter), through tools/train.py as
a user would. ``killpoints`` (custom_imports) stalls a run at a chosen moment; the test then kills its process group
with SIGKILL, resumes with ``--resume`` and compares the final weights with those of an uninterrupted run.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import ROOT, killable_classifier_config, processes_naming, run_tool, toy_data

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS = 4



@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
    # validated every epoch (the 8 validation images): a kill may also come during validation
    return killable_classifier_config(tmp_path_factory.mktemp('cfg'), 'fast_cls.py', EPOCHS, val_interval=1)


def _env(**kill):
    env = {'PYTHONPATH': os.pathsep.join([ROOT, HERE, os.environ.get('PYTHONPATH', '')]), 'OMP_NUM_THREADS': '1'}
    env.update({f'KILLPOINT_{k.upper()}': str(v) for k, v in kill.items()})
    return env  # OMP_NUM_THREADS=1: the same reduction order in every run, and a fair share of the shared cores


def train(cfg, wd, *args, gpus=None, port=None, **kill):
    """Runs tools/train.py (``gpus``: tools/dist_train.sh with that many CPU processes) to the end, or to a kill point
    and then kills its process group with SIGKILL; returns (rc, log)."""
    if gpus:
        cmd = ['bash', 'tools/dist_train.sh', cfg, str(gpus)]
    else:
        cmd = [sys.executable, 'tools/train.py', cfg]
    cmd += ['--work-dir', str(wd), *args]
    env = dict(_env(**kill), PORT=str(port or 29500))
    if not kill:
        r = run_tool(*cmd, env=env)
        return r.returncode, r.stdout + r.stderr
    mark = str(wd) + '.mark'
    if os.path.exists(mark):
        os.remove(mark)
    env = dict(os.environ, PYTHONUNBUFFERED='1', **env, KILLPOINT_MARK=mark)
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    log_path = str(wd) + '.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while not os.path.exists(mark):
            assert proc.poll() is None, f'exited with {proc.returncode} before the kill point: ' + _tail(log_path)
            assert time.time() < deadline, 'kill point not reached in 300 s'
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group, as a scheduler does; it is our own child's
        proc.wait()
    # torchrun starts each worker in a session of its own, out of reach of that kill: they must die with it, or they
    # train on and write into the work dir beside the resumed run
    left = processes_naming(wd, within=20)
    assert not left, f'still running after the launcher was killed: {left}'
    return proc.returncode, open(log_path).read()


def _tail(path, n=3000):
    with open(path) as f:
        return f.read()[-n:]


def copy_run(src, dst):
    shutil.copytree(src, dst)
    pointer = os.path.join(dst, 'last_checkpoint')
    with open(pointer) as f:
        name = os.path.basename(f.read().strip())
    with open(pointer, 'w') as f:
        f.write(os.path.join(str(dst), name))


def weights(path):
    from mmdavit import load_checkpoint_file  # weights-only, mmengine's classes allowed (importing allows nothing)
    return load_checkpoint_file(str(path))['state_dict']


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)
    assert worst <= 1e-6, f'final weights differ from the uninterrupted run by up to {worst}'


def resumed_epoch(log):
    m = re.findall(r'resumed epoch: (\d+), iter: (\d+)', log)
    assert len(m) == 1, log[-3000:]
    return int(m[0][0])


def ckpts(wd):
    return sorted(n for n in os.listdir(wd) if n.endswith('.pth'))


@pytest.fixture(scope='module')
def reference(cfg, tmp_path_factory):
    wd = tmp_path_factory.mktemp('reference')
    rc, log = train(cfg, wd)
    assert rc == 0, log[-3000:]
    assert ckpts(wd) == [f'epoch_{EPOCHS}.pth']
    return os.path.join(wd, f'epoch_{EPOCHS}.pth')


@pytest.fixture(scope='module')
def killed_between_saves(cfg, tmp_path_factory):
    """A run killed in epoch 3 (after its 5th iteration), epochs 1 and 2 saved (max_keep_ckpts=2)."""
    wd = tmp_path_factory.mktemp('between')
    rc, log = train(cfg, wd, '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2', iter=5)
    assert rc == -signal.SIGKILL
    assert ckpts(wd) == ['epoch_1.pth', 'epoch_2.pth']
    return wd


def test_kill_while_writing_keeps_previous_checkpoint_and_resume_is_exact(cfg, reference, tmp_path):
    """The issue's first case: max_keep_ckpts=1, killed while epoch_2.pth is being written."""
    wd = tmp_path / 'wd'
    rc, _ = train(cfg, wd, save='epoch_2.pth')
    assert rc == -signal.SIGKILL
    # the partial file is under the temporary name only; epoch_1 was not removed before epoch_2 was complete
    assert ckpts(wd) == ['epoch_1.pth'] and os.path.isfile(wd / 'epoch_2.pth.tmp')
    assert open(wd / 'last_checkpoint').read().strip().endswith('epoch_1.pth')
    rc, log = train(cfg, wd, '--resume')
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 1 and 'last_checkpoint names it and it loads' in log
    assert ckpts(wd) == [f'epoch_{EPOCHS}.pth'] and not os.path.exists(wd / 'epoch_2.pth.tmp')
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', reference)


def test_kill_while_writing_first_checkpoint_starts_over_cleanly(cfg, reference, tmp_path):
    """The issue's second case: nothing complete yet, so --resume starts from scratch, and says so."""
    wd = tmp_path / 'wd'
    rc, _ = train(cfg, wd, save='epoch_1.pth')
    assert rc == -signal.SIGKILL
    assert ckpts(wd) == [] and not os.path.exists(wd / 'last_checkpoint')
    rc, log = train(cfg, wd, '--resume')
    assert rc == 0, log[-3000:]
    assert 'starting from scratch' in log and 'resumed epoch' not in log
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', reference)


def test_two_kills_in_a_row_between_saves_then_while_saving(cfg, reference, killed_between_saves, tmp_path):
    wd = tmp_path / 'wd'
    copy_run(killed_between_saves, wd)
    rc, log = train(cfg, wd, '--resume', '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2',
                    save='epoch_4.pth')
    assert rc == -signal.SIGKILL and resumed_epoch(log) == 2
    assert ckpts(wd) == ['epoch_2.pth', 'epoch_3.pth']
    rc, log = train(cfg, wd, '--resume', '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2')
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 3
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', reference)


def test_truncated_checkpoint_planted_under_last_checkpoint(cfg, reference, killed_between_saves, tmp_path):
    wd = tmp_path / 'wd'
    copy_run(killed_between_saves, wd)
    data = open(wd / 'epoch_2.pth', 'rb').read()
    with open(wd / 'epoch_3.pth', 'wb') as f:
        f.write(data[:len(data) // 2])
    (wd / 'last_checkpoint').write_text(str(wd / 'epoch_3.pth'))
    rc, log = train(cfg, wd, '--resume', '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2')
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 2
    assert re.search(r'epoch_2\.pth \(epoch 2, iter 4\): the newest checkpoint that loads \(last_checkpoint is '
                     r'unusable; skipped: last_checkpoint names \S+epoch_3\.pth is incomplete', log), log[-3000:]
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', reference)


def test_last_checkpoint_naming_a_deleted_file(cfg, reference, killed_between_saves, tmp_path):
    wd = tmp_path / 'wd'
    copy_run(killed_between_saves, wd)
    os.remove(wd / 'epoch_2.pth')
    rc, log = train(cfg, wd, '--resume', '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2')
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 1 and 'epoch_2.pth: no such file' in log
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', reference)


def test_no_loadable_checkpoint_refuses_to_start_over(cfg, tmp_path):
    wd = tmp_path / 'wd'
    wd.mkdir()
    (wd / 'epoch_1.pth').write_bytes(b'PK\x03\x04 not a whole zip')
    (wd / 'last_checkpoint').write_text(str(wd / 'epoch_2.pth'))
    before = sorted(os.listdir(wd))
    rc, log = train(cfg, wd, '--resume')
    assert rc == 2, log[-3000:]
    lines = [ln for ln in log.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1 and 'epoch_1.pth is incomplete or not a checkpoint' in lines[0] \
        and 'epoch_2.pth: no such file' in lines[0], log[-3000:]
    assert 'Traceback' not in log and sorted(os.listdir(wd)) == before


def test_resume_path_that_is_truncated_or_foreign_is_one_line(cfg, tmp_path):
    truncated = tmp_path / 'epoch_9.pth'
    torch.save({'meta': {'epoch': 9, 'iter': 9}, 'state_dict': {'w': torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    foreign = tmp_path / 'davit_tiny.pth'
    torch.save({'model': {'w': torch.zeros(3)}}, foreign)
    for path, says in [(truncated, 'is incomplete or not a checkpoint'),
                       (foreign, 'holds weights but no training state')]:
        rc, log = train(cfg, tmp_path / 'wd', '--resume', str(path))
        assert rc == 2 and says in log and 'Traceback' not in log, log[-3000:]
        assert not (tmp_path / 'wd').exists()



SEG_CFG = f'''
_base_ = {os.path.join(ROOT, 'configs', 'toy', 'upernet_davit-t_toy-ade.py')!r}
custom_imports = dict(imports=['mmseg_davit', 'killpoints'], allow_failed_imports=False)
custom_hooks = [dict(type='KillPoint')]
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]),
                           drop_path_rate=0.2),
             decode_head=dict(in_channels=[16, 32, 64, 128], channels=32),
             auxiliary_head=dict(in_channels=64, channels=16))
# 6 images, batch 2: the infinite sampler wraps every 3 iterations, so the resumed run crosses a wrap
train_dataloader = dict(batch_size=2, dataset=dict(indices=list(range(6))))
val_dataloader = dict(dataset=dict(indices=[0, 1]))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=8, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=1))
randomness = dict(seed=0)
'''


@pytest.mark.slow
def test_iter_based_mmseg_kill_while_writing_resumes_exactly(tmp_path):
    """mmseg's loop is iteration-based: mmengine replays the batches already trained to put the sampler back; the
    generators are restored after that replay, right before the first new batch."""
    toy_data('ade')
    cfg = tmp_path / 'fast_seg.py'
    cfg.write_text(SEG_CFG)
    ref = tmp_path / 'reference'
    rc, log = train(str(cfg), ref)
    assert rc == 0, log[-3000:]
    wd = tmp_path / 'wd'
    rc, _ = train(str(cfg), wd, save='iter_6.pth')
    assert rc == -signal.SIGKILL and ckpts(wd) == ['iter_4.pth']
    rc, log = train(str(cfg), wd, '--resume')
    assert rc == 0, log[-3000:]
    assert re.search(r'resumed epoch: 0, iter: 4', log) and 'Advance dataloader 4 steps' in log, log[-3000:]
    assert ckpts(wd) == ['iter_8.pth']
    assert_same_weights(wd / 'iter_8.pth', ref / 'iter_8.pth')


@pytest.mark.slow
def test_two_process_kill_while_writing_every_rank_resumes_from_the_same_file(cfg, tmp_path):
    """dist_train.sh, 2 CPU processes (1 iteration an epoch each): only rank 0 writes, the launcher resolves --resume
    once and hands the file to both ranks, each rank gets back its own generator states."""
    ref = tmp_path / 'reference'
    rc, log = train(cfg, ref, gpus=2, port=29531)
    assert rc == 0, log[-3000:]
    wd = tmp_path / 'wd'
    rc, _ = train(cfg, wd, gpus=2, port=29532, save='epoch_3.pth')
    assert rc == -signal.SIGKILL and ckpts(wd) == ['epoch_2.pth']
    rc, log = train(cfg, wd, '--resume', gpus=2, port=29533)
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 2 and 'checked by the launcher' in log, log[-3000:]
    assert_same_weights(wd / f'epoch_{EPOCHS}.pth', ref / f'epoch_{EPOCHS}.pth')


DET_CFG = f'''
_base_ = {os.path.join(ROOT, 'configs', 'toy', 'mask-rcnn_davit-t_toy-coco.py')!r}
custom_imports = dict(imports=['mmdet_davit', 'killpoints'], allow_failed_imports=False)
custom_hooks = [dict(type='KillPoint')]
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]),
                  drop_path_rate=0.2),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32), bbox_head=dict(in_channels=32, fc_out_channels=64),
                  mask_roi_extractor=dict(out_channels=32), mask_head=dict(in_channels=32, conv_out_channels=32)),
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
train_dataloader = dict(batch_size=2, dataset=dict(indices=4))
val_dataloader = dict(batch_size=2, dataset=dict(indices=2))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=3, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
'''


@pytest.mark.slow
def test_mmdet_kill_while_writing_resumes_exactly(tmp_path):
    """Mask R-CNN draws from torch's generator in its RPN and RoI samplers on top of the data augmentation."""
    toy_data('coco')
    cfg = tmp_path / 'fast_det.py'
    cfg.write_text(DET_CFG)
    ref = tmp_path / 'reference'
    rc, log = train(str(cfg), ref)
    assert rc == 0, log[-3000:]
    wd = tmp_path / 'wd'
    rc, _ = train(str(cfg), wd, save='epoch_2.pth')
    assert rc == -signal.SIGKILL and ckpts(wd) == ['epoch_1.pth']
    rc, log = train(str(cfg), wd, '--resume')
    assert rc == 0, log[-3000:]
    assert resumed_epoch(log) == 1
    assert_same_weights(wd / 'epoch_3.pth', ref / 'epoch_3.pth')

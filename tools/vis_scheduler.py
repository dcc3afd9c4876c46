#!/usr/bin/env python
"""Draws the learning rate a config's training uses at every iteration, for a given number of GPUs.

    python tools/vis_scheduler.py CONFIG [--gpus N] [--dataset-size N] [--out lr.png] [--cfg-options k=v ...]

mmengine's Runner builds the optimizer, applies ``auto_scale_lr`` for GPUs x samples per GPU and builds the
schedulers (filling in what the config leaves out, e.g. a missing ``end``); mmengine's ParamSchedulerHook steps them
as training would. No data is read and nothing is trained, so ADE20K's 160k iterations take seconds. (mmpretrain's
tools/visualization/vis_scheduler.py runs the train loop on a one-parameter stand-in model, so it draws one rate
whatever the config's paramwise_cfg, and leaves ``auto_scale_lr`` out: an 8-GPU learning rate for a 1-GPU run.)
Writes the picture and a JSON of the curves beside it: one curve per distinct learning rate among the parameter
groups (e.g. Florence-2's stage rates).
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import tempfile
import warnings

import _cli as ru  # tools/ is on sys.path as the script's folder
import _config
from mmdavit.training.schedule import learning_rates
from mmengine.config import DictAction

# nothing is trained, so no optimizer step precedes a scheduler step (and the Runner logs at ERROR level only: its
# dataset is a range of numbers, with no metainfo to warn about)
warnings.filterwarnings('ignore', message=re.escape('Detected call of `scheduler.step()` before `optimizer.step()`'))

MAX_JSON_POINTS = 4000


def dataset_length(cfg):
    """Images in the training set, by building it as training would (the annotations must be there)."""
    from mmengine.registry import DATASETS
    try:
        return len(DATASETS.build(cfg.train_dataloader.dataset))
    except Exception as e:  # noqa: BLE001  any failure means the same to the user: no data here
        raise ru.UserError(
            'this schedule counts epochs, so its length depends on the training set, which could not be read '
            f'({ru.short_cause(e)}); give --dataset-size N (COCO train2017: 117266, ImageNet-1k: 1281167)') from None


def curve_labels(optimizer, model, curves):
    """A legend entry per curve: its share of the peak rate and the parameters that follow it."""
    names = {id(p): n for n, p in model.named_parameters()}
    peak = max(curves)
    labels = {}
    for rate in curves:
        members = [names[id(p)] for g in optimizer.param_groups if g['lr'] == rate for p in g['params']]
        if len(curves) == 1:
            labels[rate] = f'all {len(members)} parameter tensors'
            continue
        common = osp.commonprefix([m.split('.') for m in members])  # whole name components only
        where = '.'.join(common) + '.*' if common else ', '.join(sorted({m.split('.')[0] for m in members}))
        labels[rate] = f'x{rate / peak:.3g}: {len(members)} tensors ({where})'
    return labels


def draw(curves, labels, iters_per_epoch, by_epoch, title, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    first = next(iter(curves.values()))
    warmup = int(first.argmax())
    close_up = 0 < warmup < len(first) // 20  # a warmup too short to see at full scale gets a panel of its own
    if close_up:
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw=dict(width_ratios=[3, 1]))
    else:
        fig, ax = plt.subplots(figsize=(10, 5))
    for rate, lr in curves.items():
        ax.plot(lr, linewidth=1.2, label=labels[rate])
    ax.set_xlabel('iteration')
    ax.set_ylabel('learning rate')
    fig.suptitle(title, fontsize=10)  # above the epoch axis, which ax.set_title would collide with
    ax.grid(alpha=0.3)
    if by_epoch:
        top = ax.secondary_xaxis('top', functions=(lambda x: x / iters_per_epoch, lambda e: e * iters_per_epoch))
        top.set_xlabel('epoch')
    if len(curves) > 1:
        ax.legend(fontsize=8, loc='upper right')  # 'best' searches every point of the curves: slow, and warns
    if close_up:
        end = min(len(first), 3 * warmup)
        for lr in curves.values():
            zoom.plot(range(end), lr[:end], linewidth=1.2)
        zoom.set_xlabel(f'iteration (first {end})')
        zoom.set_title(f'warmup: {warmup} iterations', fontsize=9)
        zoom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Draw the learning rate of every iteration of a config\'s training')
    parser.add_argument('config')
    parser.add_argument('--gpus', '--ngpus', type=int, default=1,
                        help='processes of the training run (auto_scale_lr scales for GPUs x samples per GPU)')
    parser.add_argument('--dataset-size', type=int,
                        help='training images (epoch-based configs; default: the length of the configured dataset)')
    parser.add_argument('--out', help='the picture (default work_dirs/CONFIG_NAME/lr_curve.png); its .json beside it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.gpus < 1 or (args.dataset_size is not None and args.dataset_size < 1):
        raise ru.UserError('--gpus and --dataset-size must be positive')
    cfg = _config.load_config(args.config, args.cfg_options, None)
    out = args.out or osp.join(cfg.work_dir, 'lr_curve.png')
    if osp.splitext(out)[1].lower() not in ('.png', '.jpg', '.svg', '.pdf'):
        raise ru.UserError(f'--out {out!r}: name a picture (.png, .jpg, .svg or .pdf)')
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    per_gpu = cfg.train_dataloader.batch_size
    total = per_gpu * args.gpus
    by_epoch = cfg.train_cfg.get('type', 'EpochBasedTrainLoop') != 'IterBasedTrainLoop' and \
        cfg.train_cfg.get('by_epoch', True)
    iters_per_epoch = 1
    if by_epoch:
        size = args.dataset_size or dataset_length(cfg)
        iters_per_epoch = math.ceil(math.ceil(size / args.gpus) / per_gpu)  # mmengine's DefaultSampler, no drop_last
    model = MODELS.build(cfg.model)
    with tempfile.TemporaryDirectory() as tmp:  # the Runner insists on a work dir; nothing of it is kept
        optimizer, curves = learning_rates(cfg, model, total, iters_per_epoch, tmp)
    labels = curve_labels(optimizer, model, curves)
    iterations = len(next(iter(curves.values())))
    scale = cfg.get('auto_scale_lr') or {}
    scaled = f'auto_scale_lr: x{total / scale["base_batch_size"]:.3g} of the config\'s lr (base batch ' \
             f'{scale["base_batch_size"]})' if scale.get('enable') else 'auto_scale_lr off: the config\'s lr'
    title = f'{osp.basename(args.config)}: {args.gpus} GPU(s) x {per_gpu} = batch {total}; {scaled}'
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    draw(curves, labels, iters_per_epoch, by_epoch, title, out)
    step = max(1, math.ceil(iterations / MAX_JSON_POINTS))
    sampled = sorted(set(range(0, iterations, step)) | {iterations - 1})
    record = dict(config=args.config, gpus=args.gpus, batch_per_gpu=per_gpu, total_batch=total,
                  iters_per_epoch=iters_per_epoch if by_epoch else None, iterations=iterations,
                  auto_scale_lr=dict(scale), sampled_iterations=sampled,
                  curves=[dict(label=labels[r], initial_lr=float(c[0]), peak_lr=float(c.max()),
                               peak_at=int(c.argmax()), final_lr=float(c[-1]), lr=[float(c[i]) for i in sampled])
                          for r, c in curves.items()])
    json_path = osp.splitext(out)[0] + '.json'
    with open(json_path, 'w') as f:
        json.dump(record, f)
    print(title)
    print(f'{iterations} iterations' + (f' ({iters_per_epoch} an epoch)' if by_epoch else ''))
    for c in record['curves']:
        print(f'  {c["label"]}: starts {c["initial_lr"]:.3g}, peaks {c["peak_lr"]:.3g} at iteration '
              f'{c["peak_at"]}, ends {c["final_lr"]:.3g}')
    print(f'picture: {out}\ncurves: {json_path}')


if __name__ == '__main__':
    ru.run_main(main)

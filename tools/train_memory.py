#!/usr/bin/env python
"""Memory of one training step of a config's model, to tell which GPU a recipe needs before renting one.

    python tools/train_memory.py CONFIG [--size H W] [--batch N] [--device cpu|cuda] [--cfg-options k=v ...]

Builds the config's model and optimizer (random weights: the pretrained checkpoint is not read), runs one warm-up
training step on a random batch (detection: 8 boxes and masks per image; segmentation and classification: random
labels), then measures one more (mmdavit.training.memory). Prints a table and, last, one JSON line. On the CPU the
peak is the replay of the profiler's allocation records: the tensors a GPU would hold, without its context (0.5-1 GB)
and its allocator's slack. SyncBN becomes BN (one process holds the same tensors).
"""
import argparse
import json
import sys

import _cli as ru  # tools/ is on sys.path as the script's folder; first: it checks the environment (_env)
import _config
import torch

from mmdavit.checkpoints.reader import build_model
from mmdavit.training.memory import random_batch, training_step_memory

DEFAULT_SIZES = {'mmdet': (800, 1344), 'mmseg': (512, 512), 'mmpretrain': (224, 224)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                   help='input size (default: mmdet 800 1344, mmseg 512 512, mmpretrain 224 224)')
    p.add_argument('--batch', type=int, default=None, help='images per GPU (default: the train dataloader\'s)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=ru.DictAction, dest='cfg_options')
    return p.parse_args(argv)


def main():
    args = parse_args()
    cfg = _config.load_config(args.config, args.cfg_options, None)
    backbone = cfg.model.get('backbone') or {}
    if isinstance(backbone.get('init_cfg'), dict) and backbone['init_cfg'].get('type') == 'Pretrained':
        backbone['init_cfg'] = None  # the sizes are what is measured, not the weights
    scope = cfg.default_scope
    height, width = args.size or DEFAULT_SIZES[scope]
    batch = cfg.train_dataloader.batch_size if args.batch is None else args.batch
    if batch < 1 or height < 32 or width < 32:
        raise ru.UserError(f'--batch must be >= 1 and --size at least 32 x 32, got {batch}, {height} x {width}')
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    device = torch.device(args.device)
    model = revert_sync_batchnorm(build_model(cfg)).to(device)
    model.init_weights()
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    head = cfg.model.get('bbox_head') or cfg.model.get('decode_head') or cfg.model.get('head') or {}
    num_classes = int(head.get('num_classes', 80)) if isinstance(head, dict) else 80
    data = random_batch(scope, height, width, batch, num_classes)
    mib = training_step_memory(model, optim_wrapper, data, device)
    with_cp = backbone.get('with_cp', False)
    print(f'{args.config}: {batch} x {height}x{width}, with_cp={with_cp}, {args.device}')
    for name, value in mib.items():
        print(f'  {name:<17} {value:9.0f} MiB')
    print(json.dumps(dict(config=args.config, size=[height, width], batch=batch, with_cp=with_cp,
                          device=args.device, **{k: round(v, 1) for k, v in mib.items()})))


if __name__ == '__main__':
    ru.run_main(main)

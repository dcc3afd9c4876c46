#!/usr/bin/env python
"""Trains any config of this project (mmdet, mmseg or mmpretrain, chosen by the config's default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [same args]
"""
import argparse
import os

import _cli as ru  # tools/ is on sys.path as the script's folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a DaViT model (mmdet / mmseg / mmpretrain)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if no CKPT is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (GPUs x samples per GPU) / auto_scale_lr.base_batch_size')
    ru.add_common_args(parser)
    args = parser.parse_args(argv)
    ru.local_rank_env(args)
    return args


def main():
    args = parse_args()
    cfg = ru.load_config(args.config, args.cfg_options, args.work_dir)
    ru.check_datasets(cfg, ['train', 'val'])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr or cfg.get('auto_scale_lr', {}).get('enable', False):
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not os.path.isfile(args.resume):
            raise ru.UserError(f'checkpoint to resume from not found: {args.resume!r}')
        cfg.resume, cfg.load_from = True, args.resume
    ru.setup_distributed(cfg, args.launcher)
    runner = ru.build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    ru.run_main(main)

#!/usr/bin/env python
"""Trains any config of this project (mmdet, mmseg or mmpretrain, chosen by the config's default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [same args]

Checkpoints are written by mmdavit.AtomicCheckpointHook (swapped in for mmengine's CheckpointHook): a kill at any
moment leaves the last complete checkpoint and a ``last_checkpoint`` naming it. ``--resume`` without a path continues
from the newest checkpoint of the work dir that loads.
"""
import argparse
import sys

import _cli as ru  # tools/ is on sys.path as the script's folder
import _config
import _dist


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a DaViT model (mmdet / mmseg / mmpretrain)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if no CKPT is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (GPUs x samples per GPU) / auto_scale_lr.base_batch_size')
    parser.add_argument('--validate-only', action='store_true',
                        help='check the config, data, checkpoints and --amp, print the checkpoint --resume would '
                             'continue from, write nothing (the launchers run this once before starting workers)')
    ru.add_common_args(parser)
    args = parser.parse_args(argv)
    ru.local_rank_env(args)
    return args


def main():
    args = parse_args()
    cfg = _config.load_config(args.config, args.cfg_options, args.work_dir)
    _config.check_datasets(cfg, ['train', 'val'], args.launcher)
    _config.check_pretrained(cfg, args.launcher)
    if args.amp:
        _config.check_amp()
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr or cfg.get('auto_scale_lr', {}).get('enable', False):
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    resume_line = _config.resolve_resume(cfg, args.resume, args.launcher)
    if args.validate_only:
        if resume_line:
            print(resume_line, file=sys.stderr)
        print(ru.RESUME_LINE + ((cfg.load_from or '') if cfg.get('resume') else ''))
        return
    _dist.setup_distributed(cfg, args.launcher)
    with _dist.lost_peers_as_one_line(lambda: _dist.last_checkpoint_hint(cfg.work_dir)):
        runner = _dist.build_runner(cfg)
        if resume_line:
            runner.logger.info(resume_line)
        runner.train()


if __name__ == '__main__':
    ru.run_main(main)

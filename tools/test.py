#!/usr/bin/env python
"""Tests a checkpoint with any config of this project (the task comes from the config's default_scope).

    python tools/test.py CONFIG CKPT [--out results.pkl] [--show-dir DIR] [--aug-test | --tta] [--eval mIoU]
    bash tools/dist_test.sh CONFIG CKPT GPUS [same args]

CKPT may be a checkpoint written by tools/train.py, or a bare DaViT checkpoint in any format (official release, timm,
mmpretrain): it is converted and loaded into the backbone (and a classifier's Linear into the head).
"""
import argparse
import numbers
import os

import _cli as ru  # tools/ is on sys.path as the script's folder
import _config
import _dist
from mmdavit.checkpoints.reader import Checkpoint, build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a DaViT model (mmdet / mmseg / mmpretrain)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='draw predictions on the images and save them into this folder '
                                           '(relative to the work dir unless absolute)')
    parser.add_argument('--tta', '--aug-test', action='store_true', dest='tta',
                        help='test-time augmentation from the config (mmseg: multi-scale 0.5..1.75 + flip)')
    parser.add_argument('--eval', nargs='+', metavar='METRIC',
                        help='metrics, as the original release spelled them (mmseg: mIoU mDice mFscore; '
                             'mmdet: bbox segm); the config\'s evaluator is used when omitted')
    parser.add_argument('--validate-only', action='store_true',
                        help='check the config, data and checkpoint (loaded into the model on CPU), write nothing '
                             '(dist_test.sh runs this once before starting workers)')
    ru.add_common_args(parser)
    args = parser.parse_args(argv)
    ru.local_rank_env(args)
    return args


def _apply_tta(cfg):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ru.UserError('this config defines no tta_model/tta_pipeline, so --tta/--aug-test has nothing to run')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def _apply_show_dir(cfg, show_dir):
    scope = cfg.default_scope
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ru.UserError('this config has no visualization hook, so --show-dir cannot draw')
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=show_dir)
    elif scope == 'mmseg':
        hook.update(draw=True, interval=1)  # its default draws every 50th image only
        cfg.visualizer['save_dir'] = show_dir if os.path.isabs(show_dir) else os.path.join(cfg.work_dir, show_dir)
    else:
        hook.update(enable=True, out_dir=show_dir)


def _apply_eval(cfg, metrics):
    scope = cfg.default_scope
    if scope == 'mmseg':
        cfg.test_evaluator['iou_metrics'] = list(metrics)
    elif scope == 'mmdet':
        cfg.test_evaluator['metric'] = list(metrics)
    # mmpretrain: the config's Accuracy evaluator (top-1/top-5) is what the original validate.py reported


def main():
    args = parse_args()
    cfg = _config.load_config(args.config, args.cfg_options, args.work_dir)
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise ru.UserError('--out must name a .pkl or .pickle file')
    ckpt = Checkpoint(args.checkpoint)  # read once; a missing, truncated or foreign file fails here
    if args.tta:
        _apply_tta(cfg)
    _config.check_datasets(cfg, ['test'], args.launcher)  # after --tta: its pipeline is checked too
    if args.show_dir:
        _apply_show_dir(cfg, args.show_dir)
    if args.eval:
        _apply_eval(cfg, args.eval)
    cfg.load_from = None  # loaded below, converting foreign formats
    cfg.resume = False
    # The model is built and loaded here, on CPU, and handed to the Runner: a checkpoint of another model fails
    # before the Runner writes its work dir, and the file is read and the model built once.
    model = build_model(cfg)
    ckpt.load_into(model.module if args.tta else model)  # the TTA wrapper holds the model as .module
    del ckpt
    if args.validate_only:
        return
    _dist.setup_distributed(cfg, args.launcher)
    with _dist.lost_peers_as_one_line(lambda: 'a test starts over (it writes no checkpoint)'):
        runner = _dist.build_runner(cfg, model=model)
        if args.out:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        metrics = runner.test()
    # numbers.Real takes numpy's scalars too: mmseg's are float32, which numpy 2 prints as np.float32(62.85)
    print({k: round(float(v), 4) if isinstance(v, numbers.Real) else v for k, v in metrics.items()})


if __name__ == '__main__':
    ru.run_main(main)

#!/usr/bin/env python
"""The demo's last lines: training time, metrics, and where the pictures are.

    python tools/demo_summary.py {det,seg} WORK_DIR TRAIN_SECONDS [--picture PNG]

Metrics come from WORK_DIR/test_metrics.txt (tools/test.py's printed dict) when the demo ran tools/test.py, else
from the training log's last evaluation (mmengine's <timestamp>/vis_data/scalars.json). With --picture (a
tools/infer.py output) that picture is named; otherwise one of tools/test.py's drawings is copied to
WORK_DIR/prediction.png.
"""
import argparse
import ast
import glob
import json
import os
import sys

KEYS = {'det': ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP_50'),
        'seg': ('mIoU', 'aAcc', 'mAcc')}


def read_metrics(work_dir):
    path = os.path.join(work_dir, 'test_metrics.txt')
    if os.path.isfile(path):
        metrics = {}
        with open(path) as f:
            for line in f:
                if line.startswith('{'):
                    metrics = ast.literal_eval(line.strip())
        return metrics
    runs = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        return {}
    with open(runs[-1]) as f:  # the newest run; its last record holding metrics is the final evaluation
        records = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in records if any(k in r for k in KEYS['det'] + KEYS['seg'])]
    return evals[-1] if evals else {}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=sorted(KEYS))
    parser.add_argument('work_dir')
    parser.add_argument('train_seconds', type=float)
    parser.add_argument('--picture', help='a picture tools/infer.py drew (its folder holds the others)')
    args = parser.parse_args(argv)
    wd = args.work_dir
    if args.picture:
        if not os.path.isfile(args.picture):
            print(f'error: no picture at {args.picture}', file=sys.stderr)
            return 1
        picture, folder = args.picture, os.path.dirname(args.picture)
        count = len(glob.glob(os.path.join(folder, '*.png')))
    else:
        # mmdet draws into <work_dir>/<timestamp>/vis, mmseg into <work_dir>/vis/vis_data/vis_image
        drawn = sorted(p for p in glob.glob(os.path.join(wd, '**', 'vis', '**', '*.*'), recursive=True)
                       if p.lower().endswith(('.jpg', '.png')))
        if not drawn:
            print(f'error: no drawn predictions under {wd}', file=sys.stderr)
            return 1
        from PIL import Image
        picture = os.path.join(wd, 'prediction.png')
        Image.open(drawn[0]).save(picture)
        folder, count = os.path.dirname(drawn[0]), len(drawn)
    metrics = read_metrics(wd)
    secs = int(args.train_seconds)
    print('\n==== demo finished ====')
    print(f'training took {secs // 60} min {secs % 60} s (tools/train.py from start to end, with its evaluation)')
    for k in KEYS[args.kind]:
        if k in metrics:
            print(f'{k}: {float(metrics[k]):.3f}')
    if not metrics:
        print(f'no metrics found under {wd}')
    print(f'predictions drawn on {count} validation images: {folder}')
    if args.picture:
        print(f'their boxes, masks and scores: {os.path.join(os.path.dirname(folder), "predictions.json")}')
    print(f'logs and checkpoint: {wd}')
    print(f'the picture: {picture}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

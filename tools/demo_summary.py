#!/usr/bin/env python
"""Prints where the demo's results are and copies one drawn validation image to WORK_DIR/prediction.png."""
import ast
import glob
import os
import sys

from PIL import Image


def main(kind, work_dir, train_seconds):
    # mmdet draws into <work_dir>/<timestamp>/vis, mmseg into <work_dir>/vis/vis_data/vis_image
    drawn = sorted(glob.glob(os.path.join(work_dir, '**', 'vis', '**', '*.*'), recursive=True))
    drawn = [p for p in drawn if p.lower().endswith(('.jpg', '.png'))]
    if not drawn:
        print(f'error: no drawn predictions under {work_dir}', file=sys.stderr)
        return 1
    out = os.path.join(work_dir, 'prediction.png')
    Image.open(drawn[0]).save(out)
    metrics = {}
    with open(os.path.join(work_dir, 'test_metrics.txt')) as f:
        for line in f:
            if line.startswith('{'):
                metrics = ast.literal_eval(line.strip())
    keys = ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50') if kind == 'det' else ('mIoU', 'aAcc', 'mAcc')
    print('\n==== demo finished ====')
    print(f'training took {int(train_seconds) // 60} min {int(train_seconds) % 60} s')
    for k in keys:
        if k in metrics:
            print(f'{k}: {metrics[k]}')
    print(f'predictions drawn on {len(drawn)} validation images: {os.path.dirname(drawn[0])}')
    print(f'one of them: {out}')
    print(f'logs and checkpoint: {work_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

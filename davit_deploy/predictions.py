"""``predictions.json`` and the names of the pictures beside it, as both inference paths (PyTorch's and the deployed
folder's) write them, so that their outputs compare file by file: each image's entry per task, the one-line summary
of an entry, and the file written whole or not at all."""
import json
import os
import os.path as osp

import numpy as np

from . import rle

FILE = 'predictions.json'


def vis_names(images) -> list:
    """Picture names: the image's name without extension; a name two images share keeps its extension."""
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    return [(osp.basename(p) if stems.count(s) > 1 else s) + '.png' for p, s in zip(images, stems)]


def instances_json(boxes, scores, labels, masks, class_name, score_thr):
    """Detections scoring >= score_thr (masks: (N, H, W) or None)."""
    out = []
    for i in np.flatnonzero(np.asarray(scores) >= score_thr):
        d = {'label': int(labels[i]), 'class': class_name(int(labels[i])), 'score': round(float(scores[i]), 4),
             'bbox_xyxy': [round(float(v), 1) for v in boxes[i]]}
        if masks is not None:
            d['mask_rle'] = rle.encode(masks[i])
        out.append(d)
    return dict(instances=out)


def segments_json(seg, class_name):
    out = []
    for label in np.unique(seg):
        m = seg == label
        out.append({'label': int(label), 'class': class_name(int(label)), 'pixels': int(m.sum()),
                    'fraction': round(float(m.mean()), 4), 'mask_rle': rle.encode(m)})
    return dict(segments=sorted(out, key=lambda d: -d['pixels']))


def top5_json(top, class_name):
    return dict(top5=[{'label': i, 'class': class_name(i), 'score': round(s, 4)} for i, s in top])


def to_json(task: str, pred: dict, class_name, score_thr: float = 0.3) -> dict:
    """The entry fields of a deployed model's prediction (``DeployedModel.predict``)."""
    if task == 'mmdet':
        return instances_json(pred['boxes'], pred['scores'], pred['labels'], pred.get('masks'), class_name,
                              score_thr)
    if task == 'mmpretrain':
        return top5_json(pred['top'], class_name)
    return segments_json(pred['seg_map'], class_name)


def summary(task: str, entry: dict) -> str:
    if task == 'mmdet':  # '2 objects {'circle': 1, 'square': 1}'
        counts = {}
        for d in entry['instances']:
            counts[d['class']] = counts.get(d['class'], 0) + 1
        n = len(entry['instances'])
        return f'{n} object{"" if n == 1 else "s"}' + (f' {dict(sorted(counts.items()))}' if counts else '')
    if task == 'mmpretrain':
        d = entry['top5'][0]
        return f'{d["class"]} ({d["score"]:.3f})'
    return ', '.join(f'{d["class"]} {100 * d["fraction"]:.1f}%' for d in entry['segments'])


def write(out: str, result: dict) -> str:
    """OUT/predictions.json under a temporary name, then renamed: a reader never sees half a file. Returns its
    path."""
    path = osp.join(out, FILE)
    with open(path + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(path + '.tmp', path)
    return path

"""``tools/infer.py DIR IMAGE_OR_DIR --out OUT`` for a deployed folder: the same ``vis/*.png`` and
``predictions.json`` schema as the PyTorch path, from onnxruntime alone."""
import argparse
import json
import os
import os.path as osp
import sys
import time

import cv2
import numpy as np

from . import draw, rle
from .model import DeployedModel, DeployedModelError, read_image

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='tools/infer.py', description='Run a deployed DaViT model (tools/deploy.py '
                                'output) with onnxruntime on images')
    p.add_argument('deployed', metavar='DIR', help='folder written by tools/deploy.py (model.onnx, deploy.json)')
    p.add_argument('images', metavar='IMAGE_OR_DIR', help='an image, or a folder of images (not recursive)')
    p.add_argument('--out', required=True, help='output folder (vis/ and predictions.json go there)')
    p.add_argument('--device', default='cpu', help="onnxruntime's device: cpu (default) or cuda")
    p.add_argument('--threads', type=int, default=0, help="onnxruntime's threads (default: its own choice)")
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detection: drop boxes scoring below this, in the picture and the JSON (default 0.3)')
    return p.parse_args(argv)


def list_images(path):
    if osp.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTS) and osp.isfile(osp.join(path, n)))
        if not names:
            raise DeployedModelError(f'no images ({", ".join(IMAGE_EXTS)}) directly inside the folder {path!r}')
        return [osp.join(path, n) for n in names]
    if osp.isfile(path):
        return [path]
    raise DeployedModelError(f'image or folder not found: {path!r}')


def vis_names(images):
    """Output picture names: the image's name without extension; a name two images share keeps its extension."""
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    return [(osp.basename(p) if stems.count(s) > 1 else s) + '.png' for p, s in zip(images, stems)]


def infer_images(images, out, predict, summarize):
    """The loop both inference paths (PyTorch and deployed) share. ``predict(path)`` -> (picture, BGR; the image's
    predictions: height, width and the task's fields); each picture goes to OUT/vis/, one line per image is printed
    (``summarize(entry)``). Returns the entries of predictions.json's ``images``."""
    vis_dir = osp.join(out, 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    entries = []
    for n, (path, name) in enumerate(zip(images, vis_names(images)), 1):
        picture, fields = predict(path)
        cv2.imwrite(osp.join(vis_dir, name), picture)
        entries.append(dict(image=path, vis=osp.join('vis', name), **fields))
        print(f'[{n}/{len(images)}] {path}: {summarize(entries[-1])}')
    return entries


def write_predictions(out, result):
    """OUT/predictions.json, written whole or not at all (a temporary name, then a rename)."""
    tmp = osp.join(out, 'predictions.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, osp.join(out, 'predictions.json'))
    print(f'pictures: {osp.join(out, "vis")}/  predictions: {osp.join(out, "predictions.json")}')


# predictions.json's entries and the one line per image, per task: both inference paths (PyTorch's tools/infer.py
# and this one) write them with these
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


def summary(task, entry):
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


def to_json(model, pred, score_thr=0.3):
    if model.task == 'mmdet':
        return instances_json(pred['boxes'], pred['scores'], pred['labels'], pred.get('masks'), model.class_name,
                              score_thr)
    if model.task == 'mmpretrain':
        return top5_json(pred['top'], model.class_name)
    return segments_json(pred['seg_map'], model.class_name)


def picture(model, img, pred, score_thr=0.3):
    if model.task == 'mmpretrain':
        return draw.classification(img, pred['top'], model.classes)
    palette = model.meta.get('palette') or np.random.RandomState(0).randint(0, 256, (len(model.classes), 3)).tolist()
    if model.task == 'mmdet':
        return draw.detection(img, pred, model.classes, palette, score_thr)
    return draw.segmentation(img, pred['seg_map'], model.classes, palette)


def main(argv=None):
    args = parse_args(argv)
    images = list_images(args.images)
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise DeployedModelError(f'--out {args.out!r} exists and is not a folder')
    t0 = time.time()
    model = DeployedModel(args.deployed, threads=args.threads, device=args.device)
    for p in images:  # each image decoded and sized before anything is written (then dropped: folders are large)
        model.preprocess(read_image(p), p)
    source = model.meta.get('source', {})
    print(f'{model.task} model deployed in {args.deployed} ({source.get("exporter", "?")} export of '
          f'{source.get("config", "?")}; {time.time() - t0:.1f} s); {len(images)} image(s)')
    def predict(path):
        img = read_image(path)
        pred = model.predict(img)
        return picture(model, img, pred, args.score_thr), dict(height=pred['height'], width=pred['width'],
                                                               **to_json(model, pred, args.score_thr))

    entries = infer_images(images, args.out, predict, lambda entry: summary(model.task, entry))
    result = dict(task=model.task, config=source.get('config'), checkpoint=source.get('checkpoint'),
                  deployed=args.deployed, classes=model.classes, images=entries)
    if model.task == 'mmdet':
        result['score_thr'] = args.score_thr
    write_predictions(args.out, result)
    return 0


def run(argv=None) -> int:
    try:
        return main(argv)
    except DeployedModelError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2

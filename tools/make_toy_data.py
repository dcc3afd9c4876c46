#!/usr/bin/env python
"""Writes small synthetic data sets in the real formats, so every task runs without downloading anything.

    python tools/make_toy_data.py coco     data/toy_coco      # COCO instances: boxes + polygon masks
    python tools/make_toy_data.py ade      data/toy_ade       # ADE20K layout: images/ + annotations/ PNG labels
    python tools/make_toy_data.py imagenet data/toy_imagenet  # timm / ImageFolder: train/<class>/*.jpg, val/...

Images show up to three filled shapes (circle, square, triangle: one colour family each) on a noisy background,
easy enough for a small CPU run to learn. Deterministic for a given --seed. Writes into a temporary folder and
renames it at the end, so an interrupted run leaves nothing half-written under OUT.
"""
import argparse
import json
import math
import os
import os.path as osp
import shutil
import sys

import _env  # tools/ is on sys.path as the script's folder

_env.require('numpy', 'PIL')

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

CLASSES = ('circle', 'square', 'triangle')
COLOURS = ((220, 60, 60), (60, 180, 75), (60, 90, 220))


def _background(rng, size):
    base = rng.integers(90, 160, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _polygon(cls, cx, cy, r):
    if cls == 0:
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    if cls == 1:
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]


def _scene(rng, size, max_shapes=3):
    """Returns (RGB image, label map with 0 = background and k+1 = class k, list of (class, polygon))."""
    img = Image.fromarray(_background(rng, size))
    label = Image.new('L', (size, size), 0)
    draw, ldraw = ImageDraw.Draw(img), ImageDraw.Draw(label)
    shapes, boxes = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):  # place without overlap so every instance stays whole
            r = float(rng.uniform(size * 0.1, size * 0.2))
            cx, cy = (float(v) for v in rng.uniform(r + 2, size - r - 2, size=2))
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, len(CLASSES)))
        poly = _polygon(cls, cx, cy, r)
        colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[cls])
        draw.polygon(poly, fill=colour)
        ldraw.polygon(poly, fill=cls + 1)
        shapes.append((cls, poly))
        boxes.append(box)
    return img, label, shapes


def make_coco(out, n_train, n_val, size, rng):
    for split, n in (('train2017', n_train), ('val2017', n_val)):
        os.makedirs(osp.join(out, split))
        images, anns = [], []
        for i in range(n):
            img, _, shapes = _scene(rng, size)
            name = f'{i:06d}.jpg'
            img.save(osp.join(out, split, name), quality=95)
            images.append(dict(id=i, file_name=name, width=size, height=size))
            for cls, poly in shapes:
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                x0, y0 = max(min(xs), 0), max(min(ys), 0)
                x1, y1 = min(max(xs), size), min(max(ys), size)
                area = 0.5 * abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k] for k in range(len(poly))))
                anns.append(dict(id=len(anns) + 1, image_id=i, category_id=cls + 1, iscrowd=0, area=area,
                                 bbox=[x0, y0, x1 - x0, y1 - y0],
                                 segmentation=[[round(v, 2) for p in poly for v in p]]))
        os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
        with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=anns,
                           categories=[dict(id=k + 1, name=c) for k, c in enumerate(CLASSES)]), f)


def make_ade(out, n_train, n_val, size, rng):
    """ADE20K's layout. Labels: 0 is ADE's 'other' (ignored with reduce_zero_label); 1 = background, 2.. shapes."""
    for split, n in (('training', n_train), ('validation', n_val)):
        os.makedirs(osp.join(out, 'images', split))
        os.makedirs(osp.join(out, 'annotations', split))
        for i in range(n):
            img, label, _ = _scene(rng, size)
            name = f'ADE_toy_{split}_{i:06d}'
            img.save(osp.join(out, 'images', split, name + '.jpg'), quality=95)
            Image.fromarray((np.asarray(label) + 1).astype(np.uint8)).save(
                osp.join(out, 'annotations', split, name + '.png'))


def make_imagenet(out, n_train, n_val, size, rng):
    """One centred shape per image; the class folder names the shape."""
    for split, n in (('train', n_train), ('val', n_val)):
        for cls, name in enumerate(CLASSES):
            os.makedirs(osp.join(out, split, name))
            for i in range(n):
                img = Image.fromarray(_background(rng, size))
                r = float(rng.uniform(size * 0.2, size * 0.35))
                cx, cy = (float(v) for v in rng.uniform(r + 1, size - r - 1, size=2))
                colour = tuple(int(np.clip(c + rng.integers(-40, 41), 0, 255)) for c in COLOURS[cls])
                ImageDraw.Draw(img).polygon(_polygon(cls, cx, cy, r), fill=colour)
                img.save(osp.join(out, split, name, f'{i:05d}.jpg'), quality=95)


MAKERS = {
    'coco': (make_coco, dict(n_train=64, n_val=16, size=128)),
    'ade': (make_ade, dict(n_train=48, n_val=12, size=128)),
    'imagenet': (make_imagenet, dict(n_train=24, n_val=8, size=64)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=sorted(MAKERS))
    parser.add_argument('out', help='output folder (must not exist, unless --force)')
    parser.add_argument('--n-train', type=int)
    parser.add_argument('--n-val', type=int)
    parser.add_argument('--size', type=int)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='replace OUT if it exists')
    args = parser.parse_args(argv)
    maker, defaults = MAKERS[args.kind]
    params = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    if osp.exists(args.out) and not args.force:
        print(f'{args.out} exists; keeping it (use --force to rebuild)')
        return 0
    tmp = args.out.rstrip('/') + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    maker(tmp, rng=np.random.default_rng(args.seed), **params)
    if osp.exists(args.out):
        shutil.rmtree(args.out)
    os.replace(tmp, args.out)
    print(f'wrote toy {args.kind} set to {args.out} ({params})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Runs a trained model on your own images, any task (the config's default_scope picks mmdet, mmseg or mmpretrain).

    python tools/infer.py CONFIG CKPT IMAGE_OR_DIR --out DIR [--score-thr 0.3] [--device cpu]
    python tools/infer.py DEPLOYED_DIR IMAGE_OR_DIR --out DIR [--device cpu|cuda] [--threads N] [--score-thr 0.3]
                                      # a tools/deploy.py folder: onnxruntime only (davit_deploy)

Writes, for every image (a file, or the images directly inside a folder):
  DIR/vis/<image name without extension>.png   detection: boxes + masks with class and score; segmentation: the
                                                class map over the image; classification: the top-5 classes
  DIR/predictions.json                          all images' predictions in one file (see the README)

The task repos' own inferencers do the work (mmdet DetInferencer, mmseg MMSegInferencer, mmpretrain
ImageClassificationInferencer), loading CKPT with their own loaders. Everything is checked before anything is
written: a missing or undecodable image, an unreadable checkpoint, or one that does not fit the config's model give
one line and exit code 2.
"""
import argparse
import os
import os.path as osp
import sys
import time

import warnings

import _env  # tools/ is on sys.path as the script's folder


# ------------------------------------------------------------------------------------------------ both paths
# Both paths write the same files the same way. The imports are inside the functions: the deployed path must
# run before torch or OpenMMLab is imported, and say in one line (_env) that numpy, OpenCV or onnxruntime is missing.

def infer_images(images, out, predict, task):
    """``predict(path)`` -> (picture, BGR; the image's entry fields); each picture goes to OUT/vis/, one line per
    image is printed. Returns the entries of predictions.json's ``images``."""
    import cv2

    from davit_deploy import predictions
    vis_dir = osp.join(out, 'vis')
    os.makedirs(vis_dir, exist_ok=True)
    entries = []
    for n, (path, name) in enumerate(zip(images, predictions.vis_names(images)), 1):
        picture, fields = predict(path)
        cv2.imwrite(osp.join(vis_dir, name), picture)
        entries.append(dict(image=path, vis=osp.join('vis', name), **fields))
        print(f'[{n}/{len(images)}] {path}: {predictions.summary(task, entries[-1])}')
    return entries


def write_predictions(out, result):
    from davit_deploy import predictions
    path = predictions.write(out, result)
    print(f'pictures: {osp.join(out, "vis")}/  predictions: {path}')


# ---------------------------------------------------------------------------------------- the deployed folder

class BadInput(Exception):
    """The deployed path's own refusals (one line, exit 2): it runs without _cli, which imports torch."""


def parse_deployed_args(argv=None):
    p = argparse.ArgumentParser(prog='tools/infer.py', description='Run a deployed DaViT model (tools/deploy.py '
                                'output) with onnxruntime on images')
    p.add_argument('deployed', metavar='DIR', help='folder written by tools/deploy.py (model.onnx, deploy.json)')
    p.add_argument('images', metavar='IMAGE_OR_DIR', help='an image, or a folder of images (not recursive)')
    p.add_argument('--out', required=True, help='output folder (vis/ and predictions.json go there)')
    p.add_argument('--device', default='cpu', help="onnxruntime's device: cpu (default) or cuda")
    p.add_argument('--threads', type=int, default=0, help="onnxruntime's threads (default: deploy.json's setting)")
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detection: drop boxes scoring below this, in the picture and the JSON (default 0.3)')
    return p.parse_args(argv)


def deployed_error_line(e) -> str:
    """The runtime's refusal in this tool's words: what to run or pass to get past it."""
    from davit_deploy import DeployFolderError, DeviceError, InputSizeError
    from davit_deploy.folder import FORMAT, TASKS
    again = 'export the model again with this version of tools/deploy.py'
    if isinstance(e, DeployFolderError):
        if e.problem == e.MISSING:
            return f'{e.folder!r} is no deployed model (no deploy.json): make one with tools/deploy.py CONFIG CKPT ' \
                   '--out DIR'
        if e.problem == e.UNREADABLE:
            return f'{e.path} is unreadable ({e.detail}): export the model again'
        if e.problem == e.NEWER:
            return f'{e.path} is {e.detail}: run it with the version of this project that exported it, or {again}'
        if e.problem == e.INCOMPLETE:
            return f'{e.path} lacks {e.detail}: {again}'
        return f'{e.path} is not a {FORMAT} file for {"/".join(TASKS)}: {again}'
    if isinstance(e, InputSizeError):
        return f'{e}: export it again with a wider range (tools/deploy.py --min-size/--max-size)'
    if isinstance(e, DeviceError):
        return '--device cuda: this onnxruntime has no CUDA provider; install onnxruntime-gpu or use --device cpu'
    return str(e)


def main_deployed(argv=None):
    from davit_deploy import DeployedModel
    from davit_deploy.draw import picture
    from davit_deploy.images import list_images, read_image
    from davit_deploy.predictions import to_json
    args = parse_deployed_args(argv)
    images = list_images(args.images)
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise BadInput(f'--out {args.out!r} exists and is not a folder')
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
        return (picture(model.task, img, pred, model.classes, model.palette, args.score_thr),
                dict(height=pred['height'], width=pred['width'],
                     **to_json(model.task, pred, model.class_name, args.score_thr)))

    entries = infer_images(images, args.out, predict, model.task)
    result = dict(task=model.task, config=source.get('config'), checkpoint=source.get('checkpoint'),
                  deployed=args.deployed, classes=model.classes, images=entries)
    if model.task == 'mmdet':
        result['score_thr'] = args.score_thr
    write_predictions(args.out, result)
    return 0


def run_deployed(argv=None) -> int:
    from davit_deploy import DeployedModelError
    try:
        return main_deployed(argv)
    except BadInput as e:
        print(f'error: {e}', file=sys.stderr)
    except DeployedModelError as e:
        print(f'error: {deployed_error_line(e)}', file=sys.stderr)
    return 2


def is_deployed(path) -> bool:
    """A folder where CONFIG stands is a tools/deploy.py folder: a config is a file."""
    return osp.isdir(path)


if __name__ == '__main__' and len(sys.argv) > 1 and is_deployed(sys.argv[1]):
    _env.require('numpy', 'cv2', 'onnxruntime')
    sys.path.insert(0, _env.ROOT)
    sys.exit(run_deployed(sys.argv[1:]))

_env.require('torch', 'mmengine', 'mmdavit')

# noise that says nothing about the user's run: the inferencers' visualizer announcing that it has no save_dir
# (this tool writes the pictures itself); setuptools' notice is silenced in _cli for every tool
warnings.filterwarnings('ignore', message='Failed to add <class')

import _cli as ru  # noqa: E402  tools/ is on sys.path as the script's folder
import _config  # noqa: E402
from davit_deploy.errors import ImageError  # noqa: E402
from davit_deploy.images import list_images as image_paths  # noqa: E402
from mmdavit.checkpoints.reader import Checkpoint  # noqa: E402
from mmdavit.inference import TASKS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Run a DaViT model (mmdet / mmseg / mmpretrain) on images')
    parser.add_argument('config', help='config file the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint file (tools/train.py output, or a whole-model checkpoint)')
    parser.add_argument('images', metavar='IMAGE_OR_DIR', help='an image, or a folder of images (not recursive)')
    parser.add_argument('--out', required=True, help='output folder (vis/ and predictions.json go there)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: drop boxes scoring below this, in the picture and the JSON (default 0.3)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda when available)')
    parser.add_argument('--cfg-options', nargs='+', action=ru.DictAction, dest='cfg_options',
                        help='override config keys, e.g. model.test_cfg.rcnn.max_per_img=50')
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- validation

def list_images(path):
    try:
        images = image_paths(path)
    except ImageError as e:
        raise ru.UserError(str(e)) from None
    import mmcv
    for p in images:
        try:  # the decoder the inferencers use, so that what passes here also loads there
            img = mmcv.imread(p)
        except Exception as e:  # noqa: BLE001  cv2 raises on some truncated files, returns None on others
            img = None
            why = f' ({type(e).__name__})'
        else:
            why = ''
        if img is None or img.size == 0:
            raise ru.UserError(f'cannot decode image {p!r}{why}: not an image, or a damaged file')
    return images




def main(argv=None):
    if argv and is_deployed(str(argv[0])):
        return main_deployed(argv)
    args = parse_args(argv)
    cfg = _config.load_config(args.config, args.cfg_options, None)  # imports the config's custom_imports (DaViT)
    images = list_images(args.images)
    ckpt = Checkpoint(args.checkpoint)  # read once, weights only; the inferencers are handed the object
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise ru.UserError(f'--out {args.out!r} exists and is not a folder')
    scope = cfg.default_scope
    t0 = time.time()
    task = TASKS[scope](cfg, ckpt, args.device, args.score_thr)
    note = ckpt.check_fits(task.model, scope)
    if note:
        print(note)
    del ckpt
    print(f'{scope} model from {args.config} with {args.checkpoint} ({time.time() - t0:.1f} s); '
          f'{len(images)} image(s)')

    def predict(path):
        import mmcv
        img = mmcv.imread(path)  # decoded once for the model and the picture (list_images decoded it to check it)
        pred = task.predict(img)
        h, w = pred.ori_shape[:2]
        # visualizers return RGB
        return task.picture(img, pred, osp.basename(path))[..., ::-1], dict(height=int(h), width=int(w),
                                                                             **task.to_json(pred))

    entries = infer_images(images, args.out, predict, scope)
    result = dict(task=scope, config=args.config, checkpoint=args.checkpoint, classes=task.classes,
                  images=entries)
    if scope == 'mmdet':
        result['score_thr'] = args.score_thr
    write_predictions(args.out, result)
    return 0


if __name__ == '__main__':
    ru.run_main(main)
    sys.exit(0)

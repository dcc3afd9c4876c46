#!/usr/bin/env python
"""Runs a trained model on your own images, any task (the config's default_scope picks mmdet, mmseg or mmpretrain).

    python tools/infer.py CONFIG CKPT IMAGE_OR_DIR --out DIR [--score-thr 0.3] [--device cpu]
    python tools/infer.py DEPLOYED_DIR IMAGE_OR_DIR --out DIR [--device cpu|cuda] [--threads N] [--score-thr 0.3]
                                      # a tools/deploy.py folder: onnxruntime only (davit_deploy/infer.py)

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

if __name__ == '__main__' and len(sys.argv) > 1 and osp.isfile(osp.join(sys.argv[1], 'deploy.json')):
    # a deployed folder: onnxruntime, numpy and OpenCV alone (davit_deploy), before torch or OpenMMLab is imported
    _env.require('numpy', 'cv2', 'onnxruntime')
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from davit_deploy.infer import run
    sys.exit(run(sys.argv[1:]))

_env.require('torch', 'mmengine', 'mmdavit')

import numpy as np  # noqa: E402

# noise that says nothing about the user's run: the inferencers' visualizer announcing that it has no save_dir
# (this tool writes the pictures itself); setuptools' notice is silenced in _cli for every tool
warnings.filterwarnings('ignore', message='Failed to add <class')

import _cli as ru  # noqa: E402  tools/ is on sys.path as the script's folder
import _config  # noqa: E402
# the loop, the predictions.json entries and the per-image line both paths (this one and the deployed one) share
from davit_deploy.infer import (IMAGE_EXTS, infer_images, instances_json, segments_json, summary,  # noqa: E402
                                top5_json, write_predictions)
from mmdavit.loading import Checkpoint, build_model  # noqa: E402

TOPK = 5
VIS_MIN_SIZE = 512  # pictures of smaller images are drawn enlarged, so that labels stay legible


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
    if osp.isdir(path):
        names = sorted(n for n in os.listdir(path)
                       if n.lower().endswith(IMAGE_EXTS) and osp.isfile(osp.join(path, n)))
        if not names:
            raise ru.UserError(f'no images ({", ".join(IMAGE_EXTS)}) directly inside the folder {path!r}')
        images = [osp.join(path, n) for n in names]
    elif osp.isfile(path):
        images = [path]
    else:
        raise ru.UserError(f'image or folder not found: {path!r}')
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


# ---------------------------------------------------------------------------------------------------- the tasks

def _dataset_meta_from_config(cfg):
    """Class names and palette of the config's test set, for checkpoints that do not carry them in their meta."""
    import copy

    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    ds = copy.deepcopy(cfg.test_dataloader.dataset)
    ds['lazy_init'] = True  # metainfo only: no annotation file is read
    try:
        return dict(DATASETS.build(ds).metainfo)
    except Exception:  # noqa: BLE001  e.g. a dataset that scans its folder for class names, and no folder here
        return {}


class Task:
    """One task's inferencer behind two calls: predict an image (the inferencer's own __call__), draw it (the
    inferencer's own visualizer)."""

    def __init__(self, cfg, ckpt, device, score_thr):
        from mmengine.registry import init_default_scope
        self.cfg, self.score_thr = cfg, score_thr
        # mmpretrain's inferencer builds its pipeline in whatever scope is current, not its own
        init_default_scope(cfg.default_scope)
        self.inferencer = self.build(cfg, ckpt, device)
        self.model = self.inferencer.model
        self.classes = self.fix_classes(ckpt)

    def fix_classes(self, ckpt):
        """Class names: the checkpoint's dataset_meta (tools/train.py saves it), else the config's test set. Left
        alone, the inferencers fall back to COCO / Cityscapes / ImageNet names, and mmpretrain's reads only its own
        private copy of the meta."""
        meta = dict(getattr(self.model, 'dataset_meta', None) or {})
        config = _dataset_meta_from_config(self.cfg)
        saved = ckpt.dataset_meta
        if saved.get('classes'):
            meta['classes'] = list(saved['classes'])
            meta['palette'] = saved.get('palette') or meta.get('palette')
        elif config.get('classes'):
            meta.update(classes=list(config['classes']), palette=config.get('palette') or meta.get('palette'))
        classes = list(meta.get('classes') or [])
        palette = meta.get('palette')
        if classes and (not isinstance(palette, (list, tuple)) or len(palette) != len(classes)):
            palette = config.get('palette')  # e.g. the names came without colours: the config's, if they fit
            if not isinstance(palette, (list, tuple)) or len(palette) != len(classes):
                palette = np.random.RandomState(0).randint(0, 256, (len(classes), 3)).tolist()
            meta['palette'] = [tuple(c) for c in palette]
        self.model.dataset_meta = meta
        return classes

    def class_name(self, label):
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def predict(self, img):
        pred = self.inferencer(img, return_datasamples=True)
        pred = pred['predictions'] if isinstance(pred, dict) else pred  # mmseg returns the sample itself
        return pred[0] if isinstance(pred, (list, tuple)) else pred

    def picture(self, img, pred, name):
        """The prediction drawn on the image (given BGR, returned RGB). Visualizers draw text at a fixed pixel size,
        so small images (the toy sets are 64-128 px) are drawn enlarged by a whole factor, predictions scaled with
        them."""
        import mmcv
        img = mmcv.bgr2rgb(img)
        k = -(-VIS_MIN_SIZE // min(img.shape[:2])) if min(img.shape[:2]) < VIS_MIN_SIZE else 1
        if k > 1:
            img = mmcv.imrescale(img, k, interpolation='nearest')
        return self.draw(img, self.scaled(pred, k) if k > 1 else pred, name)


class DetTask(Task):
    def build(self, cfg, ckpt, device):
        from mmdet.apis import DetInferencer
        inf = ckpt.inferencer(DetInferencer)(model=cfg, weights=None, device=device, scope='mmdet')
        inf.show_progress = False  # a progress bar per image would drown our one line per image
        return inf

    def fix_classes(self, ckpt):
        classes = super().fix_classes(ckpt)
        self.inferencer.visualizer.dataset_meta = self.model.dataset_meta
        return classes

    def predict(self, img):
        return self.inferencer(img, return_datasamples=True, no_save_vis=True, no_save_pred=True)['predictions'][0]

    def scaled(self, pred, k):
        import torch.nn.functional as F
        pred = pred.clone()
        inst = pred.pred_instances = pred.pred_instances.clone()  # clone() is shallow: keep the JSON's boxes
        inst.bboxes = inst.bboxes * k
        if 'masks' in inst:
            inst.masks = F.interpolate(inst.masks[:, None].float(), scale_factor=k, mode='nearest')[:, 0].bool()
        return pred

    def draw(self, img, pred, name):
        vis = self.inferencer.visualizer
        vis.add_datasample(name, img, pred, draw_gt=False, draw_pred=True, pred_score_thr=self.score_thr)
        return vis.get_image()

    def to_json(self, pred):
        inst = pred.pred_instances.cpu().numpy()
        return instances_json(inst.bboxes, inst.scores, inst.labels, inst.masks if 'masks' in inst else None,
                              self.class_name, self.score_thr)


class SegTask(Task):
    def build(self, cfg, ckpt, device):
        from mmseg.apis import MMSegInferencer
        return ckpt.inferencer(MMSegInferencer)(model=cfg, weights=None, device=device, scope='mmseg')

    def predict(self, img):
        # the inferencer's own steps without its __call__, which draws a progress bar for every single image
        inf = self.inferencer
        return inf.forward(next(iter(inf.preprocess([img], batch_size=1))))[0]

    def scaled(self, pred, k):
        import torch.nn.functional as F
        from mmengine.structures import PixelData
        pred = pred.clone()
        seg = pred.pred_sem_seg.data
        pred.pred_sem_seg = PixelData(data=F.interpolate(seg[None].float(), scale_factor=k, mode='nearest')[0]
                                      .to(seg.dtype))
        return pred

    def draw(self, img, pred, name):
        vis = self.inferencer.visualizer
        vis.set_dataset_meta(**self.model.dataset_meta)
        vis.alpha = 0.6  # the inferencer's default 0.8 hides the image under the classes
        vis.add_datasample(name, img, pred, draw_gt=False, draw_pred=True)
        return vis.get_image()

    def to_json(self, pred):
        return segments_json(pred.pred_sem_seg.data[0].cpu().numpy(), self.class_name)


class ClsTask(Task):
    def build(self, cfg, ckpt, device):
        from mmpretrain.apis import ImageClassificationInferencer
        model = build_model(cfg)  # as mmpretrain's get_model builds it, loaded from the object already read
        ckpt.load_into(model)
        model._config, model._dataset_meta = cfg, ckpt.dataset_meta
        return ImageClassificationInferencer(model=model, pretrained=False, device=device)

    def fix_classes(self, ckpt):
        classes = super().fix_classes(ckpt)
        self.inferencer.classes = classes or None
        return classes

    def topk(self, pred):
        scores = pred.pred_score.cpu()
        values, labels = scores.topk(min(TOPK, scores.numel()))
        return [(int(i), float(v)) for i, v in zip(labels, values)]

    def scaled(self, pred, k):
        return pred

    def draw(self, img, pred, name):
        from mmpretrain.visualization import UniversalVisualizer
        if getattr(self, '_vis', None) is None:
            self._vis = UniversalVisualizer()
        shown = pred.clone()
        # mmpretrain draws every label in pred_label: the top-5, not the argmax alone
        shown.set_pred_label(np.array([i for i, _ in self.topk(pred)]))
        return self._vis.visualize_cls(img, shown, classes=self.classes or None, draw_gt=False, draw_pred=True,
                                       draw_score=True)

    def to_json(self, pred):
        return top5_json(self.topk(pred), self.class_name)


TASKS = {'mmdet': DetTask, 'mmseg': SegTask, 'mmpretrain': ClsTask}


def main(argv=None):
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

    entries = infer_images(images, args.out, predict, lambda entry: summary(scope, entry))
    result = dict(task=scope, config=args.config, checkpoint=args.checkpoint, classes=task.classes,
                  images=entries)
    if scope == 'mmdet':
        result['score_thr'] = args.score_thr
    write_predictions(args.out, result)
    return 0


if __name__ == '__main__':
    ru.run_main(main)
    sys.exit(0)

#!/usr/bin/env python
"""Runs a trained model on your own images, any task (the config's default_scope picks mmdet, mmseg or mmpretrain).

    python tools/infer.py CONFIG CKPT IMAGE_OR_DIR --out DIR [--score-thr 0.3] [--device cpu]
    python tools/infer.py DEPLOYED_DIR IMAGE_OR_DIR --out DIR [--device cpu|cuda] [--threads N]
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

if __name__ == '__main__' and len(sys.argv) > 1 and osp.isfile(osp.join(sys.argv[1], 'deploy.json')):
    # a deployed folder: onnxruntime, numpy and OpenCV alone (davit_deploy), before torch or OpenMMLab is imported
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from davit_deploy.infer import run
    sys.exit(run(sys.argv[1:]))

import numpy as np

# noise that says nothing about the user's run: the inferencers' visualizer announcing that it has no save_dir
# (this tool writes the pictures itself); setuptools' notice is silenced in _cli for every tool
warnings.filterwarnings('ignore', message='Failed to add <class')

import _cli as ru  # noqa: E402  tools/ is on sys.path as the script's folder
from davit_deploy import rle  # noqa: E402  COCO's RLE, as pycocotools writes it
from davit_deploy.infer import IMAGE_EXTS, infer_images, write_predictions  # noqa: E402  the loop both paths share

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


def _state_dict(obj):
    sd = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        return {}
    import torch
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in sd.items() if isinstance(v, torch.Tensor)}


def check_checkpoint_fits(model, obj, path, scope):
    """The inferencers load non-strictly: a checkpoint of another model would leave random weights and draw
    nonsense. So after their loader ran, refuse what did not fill the model. Returns a note for the user or ''."""
    import torch
    sd = _state_dict(obj)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith('num_batches_tracked')]
    other_shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not missing and not other_shape:
        return ''
    if any(k.startswith('backbone.') for k in sd):  # a whole OpenMMLab model, but not of this config
        if other_shape:
            k = other_shape[0]
            detail = (f'{len(other_shape)} weight(s) of another shape, e.g. {k}: {tuple(sd[k].shape)} in the '
                      f'checkpoint, {tuple(own[k].shape)} in the model')
        else:
            detail = f'{len(missing)} of the model\'s weights missing, e.g. {missing[0]}'
        raise ru.UserError(f'{path} is a checkpoint of another model than this config\'s ({detail}); '
                           'pass the config it was trained with')
    from davit_backbone import CheckpointFormatError, convert_state_dict
    try:
        ours, fmt = convert_state_dict(obj, return_format=True)
    except CheckpointFormatError as e:
        raise ru.UserError(f'{path}: neither a checkpoint of this model nor a DaViT checkpoint: {e}') from None
    # A bare DaViT checkpoint (official, timm, mmpretrain, ours): the task's loader must have put it into the
    # backbone (and a classifier's Linear into the head), else the model is still random.
    targets = {k: v for k, v in getattr(model, 'backbone', model).state_dict().items()}
    head_fc = getattr(getattr(model, 'head', None), 'fc', None)
    if head_fc is not None:
        targets.update({f'head.fc.{k}': v for k, v in head_fc.state_dict().items()})
    shared = [k for k in ours if k in targets]
    other = [k for k in shared if ours[k].shape != targets[k].shape]
    if other:
        k = other[0]
        raise ru.UserError(f'{path}: DaViT weights of another size ({k}: {tuple(ours[k].shape)} in the checkpoint, '
                           f'{tuple(targets[k].shape)} in the model); pass a config of the same arch and classes')
    if not shared or not all(torch.equal(targets[k].cpu(), ours[k].to(targets[k].dtype)) for k in shared):
        raise ru.UserError(f'{path}: a DaViT checkpoint ({fmt} format) that the {scope} inferencer did not load into '
                           'the model; pass a checkpoint of the whole model (tools/train.py writes them)')
    if scope == 'mmpretrain' and any(k.startswith('head.fc.') for k in shared):
        return f'note: {path} is a DaViT classifier in the {fmt} format'
    return (f'note: {path} holds DaViT backbone weights only ({fmt} format): the rest of the model is untrained, '
            'so its predictions mean nothing')


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


def _saved_dataset_meta(obj):
    meta = obj.get('meta', {}) if isinstance(obj, dict) else {}
    saved = meta.get('dataset_meta', {}) if isinstance(meta, dict) else {}
    return {k.lower(): v for k, v in saved.items()} if isinstance(saved, dict) else {}


class Task:
    """One task's inferencer behind two calls: predict an image (the inferencer's own __call__), draw it (the
    inferencer's own visualizer)."""

    def __init__(self, cfg, ckpt_path, ckpt_obj, device, score_thr):
        from mmengine.registry import init_default_scope
        self.cfg, self.score_thr = cfg, score_thr
        # mmpretrain's inferencer builds its pipeline in whatever scope is current, not its own
        init_default_scope(cfg.default_scope)
        self.inferencer = self.build(cfg, ckpt_path, device)
        self.model = self.inferencer.model
        self.classes = self.fix_classes(ckpt_obj)

    def fix_classes(self, ckpt_obj):
        """Class names: the checkpoint's dataset_meta (tools/train.py saves it), else the config's test set. Left
        alone, the inferencers fall back to COCO / Cityscapes / ImageNet names, and mmpretrain's reads only its own
        private copy of the meta."""
        meta = dict(getattr(self.model, 'dataset_meta', None) or {})
        config = _dataset_meta_from_config(self.cfg)
        saved = _saved_dataset_meta(ckpt_obj)
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

    def predict(self, path):
        pred = self.inferencer(path, return_datasamples=True)
        pred = pred['predictions'] if isinstance(pred, dict) else pred  # mmseg returns the sample itself
        return pred[0] if isinstance(pred, (list, tuple)) else pred

    def picture(self, path, pred):
        """The prediction drawn on the image, RGB. Visualizers draw text at a fixed pixel size, so small images
        (the toy sets are 64-128 px) are drawn enlarged by a whole factor, predictions scaled with them."""
        import mmcv
        img = mmcv.imread(path, channel_order='rgb')
        k = -(-VIS_MIN_SIZE // min(img.shape[:2])) if min(img.shape[:2]) < VIS_MIN_SIZE else 1
        if k > 1:
            img = mmcv.imrescale(img, k, interpolation='nearest')
        return self.draw(img, self.scaled(pred, k) if k > 1 else pred, osp.basename(path))


class DetTask(Task):
    def build(self, cfg, ckpt, device):
        from mmdet.apis import DetInferencer
        inf = DetInferencer(model=cfg, weights=ckpt, device=device, scope='mmdet')
        inf.show_progress = False  # a progress bar per image would drown our one line per image
        return inf

    def fix_classes(self, ckpt_obj):
        classes = super().fix_classes(ckpt_obj)
        self.inferencer.visualizer.dataset_meta = self.model.dataset_meta
        return classes

    def predict(self, path):
        return self.inferencer(path, return_datasamples=True, no_save_vis=True, no_save_pred=True)['predictions'][0]

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
        keep = inst.scores >= self.score_thr
        out = []
        masks = inst.masks[keep] if 'masks' in inst else None
        for i, (box, label, score) in enumerate(zip(inst.bboxes[keep], inst.labels[keep], inst.scores[keep])):
            d = {'label': int(label), 'class': self.class_name(int(label)), 'score': round(float(score), 4),
                 'bbox_xyxy': [round(float(v), 1) for v in box]}
            if masks is not None:
                d['mask_rle'] = rle.encode(masks[i])
            out.append(d)
        return dict(instances=out)

    def summary(self, entry):
        counts = {}
        for d in entry['instances']:
            counts[d['class']] = counts.get(d['class'], 0) + 1
        n = len(entry['instances'])
        return f'{n} object{"" if n == 1 else "s"}' + (f' {dict(sorted(counts.items()))}' if counts else '')


class SegTask(Task):
    def build(self, cfg, ckpt, device):
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=cfg, weights=ckpt, device=device, scope='mmseg')

    def predict(self, path):
        # the inferencer's own steps without its __call__, which draws a progress bar for every single image
        inf = self.inferencer
        return inf.forward(next(iter(inf.preprocess([path], batch_size=1))))[0]

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
        seg = pred.pred_sem_seg.data[0].cpu().numpy()
        out = []
        for label in np.unique(seg):
            m = seg == label
            out.append({'label': int(label), 'class': self.class_name(int(label)), 'pixels': int(m.sum()),
                        'fraction': round(float(m.mean()), 4), 'mask_rle': rle.encode(m)})
        return dict(segments=sorted(out, key=lambda d: -d['pixels']))

    def summary(self, entry):
        return ', '.join(f'{d["class"]} {100 * d["fraction"]:.1f}%' for d in entry['segments'])


class ClsTask(Task):
    def build(self, cfg, ckpt, device):
        from mmpretrain.apis import ImageClassificationInferencer
        return ImageClassificationInferencer(model=cfg, pretrained=ckpt, device=device)

    def fix_classes(self, ckpt_obj):
        classes = super().fix_classes(ckpt_obj)
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
        return dict(top5=[{'label': i, 'class': self.class_name(i), 'score': round(s, 4)}
                          for i, s in self.topk(pred)])

    def summary(self, entry):
        d = entry['top5'][0]
        return f'{d["class"]} ({d["score"]:.3f})'


TASKS = {'mmdet': DetTask, 'mmseg': SegTask, 'mmpretrain': ClsTask}


def main(argv=None):
    args = parse_args(argv)
    cfg = ru.load_config(args.config, args.cfg_options, None)  # imports the config's custom_imports (DaViT)
    images = list_images(args.images)
    ckpt = ru.read_checkpoint(args.checkpoint)  # weights_only with mmengine's classes allowed
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise ru.UserError(f'--out {args.out!r} exists and is not a folder')
    scope = cfg.default_scope
    t0 = time.time()
    task = TASKS[scope](cfg, args.checkpoint, ckpt, args.device, args.score_thr)
    note = check_checkpoint_fits(task.model, ckpt, args.checkpoint, scope)
    if note:
        print(note)
    del ckpt
    print(f'{scope} model from {args.config} with {args.checkpoint} ({time.time() - t0:.1f} s); '
          f'{len(images)} image(s)')

    def predict(path):
        pred = task.predict(path)
        h, w = pred.ori_shape[:2]
        # visualizers return RGB
        return task.picture(path, pred)[..., ::-1], dict(height=int(h), width=int(w), **task.to_json(pred))

    entries = infer_images(images, args.out, predict, task.summary)
    result = dict(task=scope, config=args.config, checkpoint=args.checkpoint, classes=task.classes,
                  images=entries)
    if scope == 'mmdet':
        result['score_thr'] = args.score_thr
    write_predictions(args.out, result)
    return 0


if __name__ == '__main__':
    ru.run_main(main)
    sys.exit(0)

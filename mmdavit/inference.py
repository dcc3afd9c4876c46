"""A trained model of any task behind one interface, for images one at a time: the task repos' own inferencers
(mmdet ``DetInferencer``, mmseg ``MMSegInferencer``, mmpretrain ``ImageClassificationInferencer``) predict, their own
visualizers draw, and ``davit_deploy.predictions`` writes each prediction as the deployed runtime writes it, so that
the PyTorch path and the deployed folder give the same files.

``TASKS[cfg.default_scope](cfg, checkpoint, device, score_thr)`` builds one; ``checkpoint`` is a
``mmdavit.checkpoints.reader.Checkpoint`` (read once; the inferencers are handed the object, not the file).
"""
import numpy as np

from davit_deploy.predictions import instances_json, segments_json, top5_json

from .checkpoints.reader import build_model
from .data.meta import class_names, config_dataset_meta

__all__ = ['Task', 'DetTask', 'SegTask', 'ClsTask', 'TASKS', 'TOPK', 'VIS_MIN_SIZE']

TOPK = 5
VIS_MIN_SIZE = 512  # pictures of smaller images are drawn enlarged, so that labels stay legible


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
        """Class names (``mmdavit.data.meta``) where the inferencers read them: mmpretrain's reads only its own
        private copy of the meta."""
        meta = dict(getattr(self.model, 'dataset_meta', None) or {})
        classes, palette = class_names(ckpt.dataset_meta, config_dataset_meta(self.cfg), meta)
        if classes:
            meta.update(classes=classes, palette=palette)
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

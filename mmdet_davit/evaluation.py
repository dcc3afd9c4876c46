"""mmdet's COCO metric with three surprises of a short or small run worded and fixed.

- With no detection on any image (a model that has not learnt yet, or a ``score_thr`` above all its scores),
  mmdet logs ``The testing results of the whole dataset is empty.`` and returns no metric at all: the run exits 0,
  ``save_best`` finds no key. Here each metric is then 0.0, which is its value (no detection: no recall), with a
  warning that says why.
- mmdet scores every image of the annotation file, also one that never reached the metric (left out as unreadable
  by ``mmdavit.data.unreadable_images``), whose objects then count as missed. Here the images scored are those
  evaluated.
- With ``classwise=True``, mmdet writes the AP of class ``c`` under ``c_precision`` for the box metric and again for
  the mask metric: the mask AP overwrites the box AP. Here the keys are ``bbox_c_precision`` and
  ``segm_c_precision``.
"""
from __future__ import annotations

from typing import Dict

from mmdet.evaluation.metrics import CocoMetric as MMDetCocoMetric
from mmengine.logging import MMLogger

from mmdavit.registry import METRICS

__all__ = ['CocoMetric', 'naming_coco_metric_keys']

ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


@METRICS.register_module()
class CocoMetric(MMDetCocoMetric):
    """mmdet's ``CocoMetric`` (same arguments), each metric computed on its own so that per-class keys carry it,
    and an empty result scored 0 with a warning instead of no key."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        # the images scored are those that reached the metric: mmdet takes every image of the annotation file, so
        # an image left out (mmdavit.data.unreadable_images) would count as all its objects missed
        self.img_ids = sorted({pred['img_id'] for _, pred in results})
        if self.format_only:
            return super().compute_metrics(results)
        items = [i for i in (self.metric_items if self.metric_items is not None else ITEMS) if not i.startswith('AR')]
        metrics, out = list(self.metrics), {}
        try:
            for metric in metrics:
                self.metrics = [metric]
                got = super().compute_metrics(results)
                if metric in ('bbox', 'segm') and not any(k.startswith(f'{metric}_') for k in got):
                    MMLogger.get_current_instance().warning(
                        f'no {metric} detection on any of the {len(self.img_ids)} images evaluated (none above '
                        f"model.test_cfg's score threshold): every COCO {metric} AP is 0.0. A model this early in "
                        'training, or one whose learning rate is too low to learn (tools/vis_scheduler.py), predicts '
                        'nothing')
                    got.update({f'{metric}_{item}': 0.0 for item in items})
                out.update({f'{metric}_{k}' if k.endswith('_precision') and not k.startswith(f'{metric}_') else k: v
                            for k, v in got.items()})
        finally:
            self.metrics = metrics
        return out


def _named(metric):
    if isinstance(metric, dict) and metric.get('type') in ('CocoMetric', 'mmdet.CocoMetric'):
        return dict(metric, type='mmdavit.CocoMetric')
    return metric


def naming_coco_metric_keys(runner_cls):
    """``runner_cls`` building :class:`CocoMetric` where its config names mmdet's (same arguments). At build time,
    so that the config the Runner dumps and keeps in checkpoints stays the one the user wrote."""

    class NamesCocoMetricKeys(runner_cls):
        def build_evaluator(self, evaluator):
            if isinstance(evaluator, list):
                evaluator = [_named(m) for m in evaluator]
            elif isinstance(evaluator, dict) and 'metrics' in evaluator:
                metrics = evaluator['metrics']
                evaluator = dict(evaluator, metrics=[_named(m) for m in metrics] if isinstance(metrics, list)
                                 else _named(metrics))
            else:
                evaluator = _named(evaluator)
            return super().build_evaluator(evaluator)

    NamesCocoMetricKeys.__name__ = NamesCocoMetricKeys.__qualname__ = runner_cls.__name__
    return NamesCocoMetricKeys

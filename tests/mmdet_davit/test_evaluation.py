"""mmdet_davit/evaluation.py: mmdet's CocoMetric with per-class keys per metric, an empty result scored 0 with a
warning, and only the images evaluated scored."""
import json
import logging

import pytest
import torch
from mmengine.logging import MMLogger

from mmdet_davit.evaluation import CocoMetric, naming_coco_metric_keys

CLASSES = ('apple', 'pear')


@pytest.fixture
def ann_file(tmp_path):
    """Two 40x40 images; image 0 holds an apple, image 1 a pear (category ids 7 and 42)."""
    boxes = {0: (7, [4, 4, 16, 16]), 1: (42, [10, 12, 20, 14])}
    anns = [dict(id=i + 1, image_id=i, category_id=c, bbox=b, area=b[2] * b[3], iscrowd=0,
                 segmentation=[[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3], b[0], b[1] + b[3]]])
            for i, (c, b) in boxes.items()]
    path = tmp_path / 'val.json'
    path.write_text(json.dumps(dict(images=[dict(id=i, file_name=f'{i}.jpg', width=40, height=40) for i in boxes],
                                    annotations=anns, categories=[dict(id=7, name='apple'), dict(id=42, name='pear')])))
    return str(path), boxes


def _metric(ann, **kw):
    metric = CocoMetric(ann_file=ann, metric=['bbox', 'segm'], **kw)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def _predict(metric, boxes, images, empty=False):
    for i in images:
        cat, (x, y, w, h) = boxes[i]
        mask = torch.zeros(1, 40, 40, dtype=torch.bool)
        mask[0, y:y + h, x:x + w] = True
        n = 0 if empty else 1
        metric.process({}, [dict(img_id=i, ori_shape=(40, 40), pred_instances=dict(
            bboxes=torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)[:n], scores=torch.ones(n),
            labels=torch.tensor([CLASSES.index('apple' if cat == 7 else 'pear')])[:n], masks=mask[:n]))])
    return metric.compute_metrics(metric.results)


def test_per_class_precision_is_kept_for_boxes_and_masks(ann_file):
    ann, boxes = ann_file
    out = _predict(_metric(ann, classwise=True), boxes, [0, 1])
    for m in ('bbox', 'segm'):
        assert out[f'{m}_mAP'] == pytest.approx(1.0, abs=0.01)
        assert f'{m}_apple_precision' in out and f'{m}_pear_precision' in out
    assert not any(k in out for k in ('apple_precision', 'pear_precision'))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_no_detection_at_all_scores_zero_with_a_reason(ann_file):
    ann, boxes = ann_file
    handler = _Lines()
    MMLogger.get_instance('test_evaluation').addHandler(handler)  # the current logger, which the metric uses
    messages = handler.lines
    out = _predict(_metric(ann), boxes, [0, 1], empty=True)
    assert out['bbox_mAP'] == 0.0 and out['segm_mAP_50'] == 0.0 and len(out) == 12
    assert any('no bbox detection on any of the 2 images evaluated' in m for m in messages), messages


def test_an_image_that_never_reached_the_metric_is_not_scored(ann_file):
    ann, boxes = ann_file
    out = _predict(_metric(ann), boxes, [0])  # image 1 left out (unreadable): its pear is not a miss
    assert out['bbox_mAP'] == pytest.approx(1.0, abs=0.01)


def test_the_tools_runner_builds_it_in_place_of_mmdet_s():
    class Base:
        def build_evaluator(self, evaluator):
            return evaluator

    runner = naming_coco_metric_keys(Base)()
    assert runner.build_evaluator(dict(type='CocoMetric', ann_file='a'))['type'] == 'mmdavit.CocoMetric'
    built = runner.build_evaluator([dict(type='mmdet.CocoMetric'), dict(type='DumpResults')])
    assert [m['type'] for m in built] == ['mmdavit.CocoMetric', 'DumpResults']
    built = runner.build_evaluator(dict(type='Evaluator', metrics=[dict(type='CocoMetric')]))
    assert built['metrics'][0]['type'] == 'mmdavit.CocoMetric'

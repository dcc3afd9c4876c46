"""An exported graph against the PyTorch model it came from, image by image, on the batches the deployed runtime
feeds it (``davit_deploy.preprocess``): what ``tools/deploy.py`` runs before a folder appears, for the fp32 graph and,
with ``--int8``, for the quantised one.

- classifier: logits within ``logit_rtol`` of the largest |logit| (at least 1), and, for int8, the top-1 agreement;
- segmenter: the class map at input size on >= ``pixel_agreement`` of the pixels;
- detector: mmdet's own ``predict`` (rescaled, masks pasted) against the graph plus the runtime's post-processing
  (``davit_deploy.detection``): every PyTorch detection scoring >= ``DET_SCORE_THR`` paired with a twin of the same
  class, score within ``score_tol``, box and mask IoU >= ``min_iou``.

Each image's row goes to ``log`` as it is measured and into the returned report (``deploy.json``'s
``verification``). A disagreement is :class:`Disagreement`, carrying the image's row; an image outside the graph's
sizes is ``davit_deploy.errors.InputSizeError``: the tool words both.
"""
from typing import Callable, List, Sequence, Tuple

import numpy as np

__all__ = ['TOLERANCES', 'INT8_TOLERANCES', 'DET_SCORE_THR', 'Disagreement', 'generated_images', 'preprocessed',
           'verify', 'verify_detector', 'calibration_feeds']

LOGIT_ATOL = 1e-4
PIXEL_AGREEMENT = 0.999
DET_SCORE_THR, DET_SCORE_TOL, DET_MIN_IOU = 0.3, 0.02, 0.95
# what the fp32 graph must meet (above), and the int8 graph (--int8): its logits within INT8_LOGIT_RTOL of the
# largest |logit|, class maps on >= INT8_PIXEL_AGREEMENT of pixels, each PyTorch detection >= 0.3 paired with a twin
# of the same class, score within INT8_SCORE_TOL, box and mask IoU >= INT8_MIN_IOU. Measured, with their margins, in
# docs/deployment.md#int8
TOLERANCES = dict(logit_rtol=LOGIT_ATOL, pixel_agreement=PIXEL_AGREEMENT, score_tol=DET_SCORE_TOL,
                  min_iou=DET_MIN_IOU)
INT8_LOGIT_RTOL, INT8_PIXEL_AGREEMENT, INT8_SCORE_TOL, INT8_MIN_IOU = 0.05, 0.98, 0.05, 0.9
INT8_TOLERANCES = dict(logit_rtol=INT8_LOGIT_RTOL, pixel_agreement=INT8_PIXEL_AGREEMENT, score_tol=INT8_SCORE_TOL,
                       min_iou=INT8_MIN_IOU)


class Disagreement(ValueError):
    """The graph (``what``: 'exported graph', 'int8 graph') disagrees with PyTorch on ``row['image']``, beyond the
    tolerances; ``row`` is that image's report row."""

    def __init__(self, what: str, row: dict):
        super().__init__(f'the {what} disagrees with PyTorch on {row["image"]} ({row})')
        self.what, self.row = what, row


def generated_images(shape) -> List[Tuple[str, np.ndarray]]:
    """Three images (name, BGR) for a verification without the user's: smooth random colour fields (noise alone would
    give a classifier and a segmenter nothing to agree on but ties), none of them at the export's ``shape``."""
    import cv2
    rng = np.random.RandomState(0)
    sizes = [(shape[0] + 37, shape[1] - 53), (97, 61), (shape[0] // 2 + 1, shape[1] + 29)]
    out = []
    for h, w in sizes:
        field = rng.randint(0, 256, (max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
        out.append((f'generated {h}x{w}', cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)))
    return out


def preprocessed(name, img, recipe, lo, hi):
    """An image as the deployed runtime feeds it (batch, size before padding); ``InputSizeError`` outside lo..hi."""
    from davit_deploy.preprocess import check_size, preprocess
    x, size = preprocess(img, recipe)
    check_size(x, lo, hi, name)
    return x, size


def verify(scope, reference, session, recipe, images, lo, hi, tol=TOLERANCES, what='exported graph',
           log: Callable[[str], None] = print):
    """PyTorch vs onnxruntime on each image's preprocessed batch, within ``tol``; returns the report, raises on
    disagreement."""
    import torch
    from davit_backbone.export import run_onnx
    worst, rows = None, []
    for name, img in images:
        x, _ = preprocessed(name, img, recipe, lo, hi)
        with torch.no_grad():
            ref = [t.numpy() for t in reference(torch.from_numpy(x))]
        out = run_onnx(session, x)
        if scope == 'mmpretrain':
            err = float(np.abs(out[0] - ref[0]).max())
            ok = err <= tol['logit_rtol'] * max(1.0, float(np.abs(ref[0]).max()))
            rows.append(dict(image=name, size=list(x.shape[2:]), max_logit_diff=err))
            if tol is not TOLERANCES:  # int8: the classes as ranked, not only the logits
                rows[-1]['top1_agreement'] = float((out[0].argmax(-1) == ref[0].argmax(-1)).mean())
        else:
            agree = float((out[1] == ref[1]).mean())
            err = float(np.abs(out[0] - ref[0]).max())
            ok = agree >= tol['pixel_agreement']
            rows.append(dict(image=name, size=list(x.shape[2:]), pixel_agreement=agree, max_logit_diff=err))
        log(f'verify {name}: {x.shape[2]}x{x.shape[3]} ' + ', '.join(
            f'{k} {v:.3g}' if k == 'max_logit_diff' else f'{k} {100 * v:.3f}%'
            for k, v in rows[-1].items() if k not in ('image', 'size')))
        if not ok:
            worst = rows[-1]
    if worst:
        raise Disagreement(what, worst)
    return rows


def verify_detector(model, session, recipe, images, lo, hi, mask_thr, tol=TOLERANCES,
                    what='exported graph', log: Callable[[str], None] = print):
    """mmdet's own predict (rescaled to the image, masks pasted) against the graph in onnxruntime plus the
    runtime's post-processing (davit_deploy.detection), image by image; returns the report, raises on disagreement."""
    import torch
    from mmdet.structures import DetDataSample
    from davit_deploy.detection import match, postprocess
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    rows, bad = [], None
    for name, img in images:
        x, (h, w) = preprocessed(name, img, recipe, lo, hi)
        h0, w0 = img.shape[:2]
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h0, w0), scale_factor=(w / w0, h / h0),
                                             pad_shape=tuple(x.shape[2:]), batch_input_shape=tuple(x.shape[2:])))
        with torch.no_grad():
            inst = model.predict(torch.from_numpy(x), [sample], rescale=True)[0].pred_instances.cpu().numpy()
        ref = dict(boxes=inst.bboxes, scores=inst.scores, labels=inst.labels)
        if 'masks' in inst:
            ref['masks'] = inst.masks
        raw = dict(zip(outputs, session.run(None, {names[0]: x, names[1]: np.array([[h, w]], np.int64)})))
        got = postprocess(raw, (h, w), (h0, w0), mask_thr)
        report = match(ref, got, DET_SCORE_THR, tol['score_tol'])
        rows.append(dict(image=name, size=list(x.shape[2:]), **report))
        log(f'verify {name}: {x.shape[2]}x{x.shape[3]}, {report["reference"]} PyTorch detection(s) >= '
              f'{DET_SCORE_THR}, {report["paired"]} paired; worst box IoU {report["box_iou"]:.4f}, score diff '
              f'{report["score_diff"]:.2g}' + (f', mask IoU {report["mask_iou"]:.4f}' if 'masks' in ref else ''))
        if (report['paired'] < report['reference'] or report['unexplained'] or report['box_iou'] < tol['min_iou']
                or report['mask_iou'] < tol['min_iou']):
            bad = rows[-1]
    if bad:
        raise Disagreement(what, bad)
    if not any(r['reference'] for r in rows):
        log(f'note: no PyTorch detection scored >= {DET_SCORE_THR} on the verification images, so nothing was '
              'compared: pass --verify with images that show objects')
    return rows


def calibration_feeds(scope: str, images: Sequence[Tuple[str, np.ndarray]], recipe, lo, hi) -> List[dict]:
    """The verification's batches as onnxruntime feeds, for static int8 calibration (``mmdavit.export.quantize``)."""
    feeds = []
    for name, img in images:
        x, size = preprocessed(name, img, recipe, lo, hi)
        feeds.append(dict(input=x, image_size=np.array([size], np.int64)) if scope == 'mmdet' else dict(input=x))
    return feeds

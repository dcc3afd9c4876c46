"""A detector graph's padded outputs (``dets``, ``labels``, ``masks``: see ``mmdavit/export/detector_graph.py``) as
mmdet gives its predictions: boxes at the original image's size, masks pasted there, in numpy.

``paste_mask`` is mmdet's ``FCNMaskHead`` pasting (``_do_paste_mask``, CPU path: one box at a time, over the box's
whole-pixel bounds plus one pixel): ``grid_sample`` of the M x M probabilities, bilinear, ``align_corners=False``,
zeros outside. Every output row samples the same mask rows and every column the same mask columns, so the bilinear
sampling is two small interpolation matrices, ``rows @ mask @ cols.T``.
"""
import numpy as np

__all__ = ['postprocess', 'paste_mask', 'box_iou', 'mask_iou', 'match']


def _axis_weights(lo: float, hi: float, start: int, stop: int, size: int) -> np.ndarray:
    """(stop - start, size) bilinear weights of grid_sample for output pixels start..stop-1 on a box edge lo..hi."""
    pix = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    with np.errstate(divide='ignore', invalid='ignore'):
        g = (pix - np.float32(lo)) / (np.float32(hi) - np.float32(lo)) * np.float32(2) - np.float32(1)
    g[np.isinf(g)] = 0  # mmdet's own fix for a box of zero width
    pos = ((g + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)  # grid_sample's unnormalise
    left = np.floor(pos)
    frac = (pos - left).astype(np.float32)
    left = np.where(np.isnan(left), -2, left).astype(np.int64)  # 0 / 0 on a zero-width box: no sample, as torch
    weights = np.zeros((len(pix), size), np.float32)
    rows = np.arange(len(pix))
    for offset, w in ((0, np.float32(1) - frac), (1, frac)):
        col = left + offset
        inside = (col >= 0) & (col < size)  # zeros padding: samples outside the mask add nothing
        weights[rows[inside], col[inside]] += w[inside]
    return weights


def paste_mask(mask: np.ndarray, box, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
    """(M, M) probabilities in ``box`` (x1, y1, x2, y2, original pixels) -> (height, width) bool mask, or uint8
    probabilities x 255 when ``threshold`` < 0 (mmdet's ``mask_thr_binary`` rule)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, r0 = max(int(np.floor(np.float32(x0))) - 1, 0), max(int(np.floor(np.float32(y0))) - 1, 0)
    c1, r1 = min(int(np.ceil(np.float32(x1))) + 1, width), min(int(np.ceil(np.float32(y1))) + 1, height)
    out = np.zeros((height, width), bool if threshold >= 0 else np.uint8)
    if c1 <= c0 or r1 <= r0:
        return out
    rows = _axis_weights(y0, y1, r0, r1, mask.shape[0])
    cols = _axis_weights(x0, x1, c0, c1, mask.shape[1])
    prob = rows @ mask.astype(np.float32) @ cols.T
    out[r0:r1, c0:c1] = prob >= threshold if threshold >= 0 else (prob * 255).astype(np.uint8)
    return out


def postprocess(outputs: dict, resized, original, mask_threshold: float = 0.5) -> dict:
    """The first image's detections: ``boxes`` (N, 4) in the original image's pixels, ``scores``, ``labels`` and,
    for Mask R-CNN, ``masks`` (N, H, W) bool; in the graph's order (descending score), padding rows dropped."""
    (h, w), (h0, w0) = resized, original
    dets, labels = outputs['dets'][0], outputs['labels'][0]
    keep = labels >= 0
    scale = np.array([w / w0, h / h0, w / w0, h / h0], np.float32)  # mmdet's scale_factor, (w, h) twice
    boxes = dets[keep, :4].astype(np.float32) / scale
    pred = dict(boxes=boxes, scores=dets[keep, 4].astype(np.float32), labels=labels[keep].astype(np.int64))
    if 'masks' in outputs:
        probs = outputs['masks'][0][keep]
        pred['masks'] = (np.stack([paste_mask(m, b, h0, w0, mask_threshold) for m, b in zip(probs, boxes)])
                         if len(boxes) else np.zeros((0, h0, w0), bool))
    return pred


def box_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else float(np.allclose(a, b))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def match(reference: dict, exported: dict, score_thr: float = 0.3, score_tol: float = 0.02) -> dict:
    """Each reference detection scoring >= ``score_thr`` paired with an exported twin of the same class scoring
    within ``score_tol``: the pairs of highest box IoU first, so that among many overlapping detections each finds
    its own twin rather than a neighbour. Returns the counts and the worst pair's box IoU, score difference and mask
    IoU (1.0 / 0.0 when there is nothing to pair)."""
    wanted = [i for i, s in enumerate(reference['scores']) if s >= score_thr]
    candidates = []
    for i in wanted:
        for j, (label, score) in enumerate(zip(exported['labels'], exported['scores'])):
            if label == reference['labels'][i] and abs(score - reference['scores'][i]) <= score_tol:
                candidates.append((box_iou(reference['boxes'][i], exported['boxes'][j]), i, j))
    pairs, taken_i, taken_j = [], set(), set()
    for iou, i, j in sorted(candidates, key=lambda c: -c[0]):
        if i not in taken_i and j not in taken_j:
            pairs.append((iou, i, j))
            taken_i.add(i)
            taken_j.add(j)
    worst = dict(box_iou=min([iou for iou, _, _ in pairs] + [1.0]) if len(pairs) == len(wanted) else 0.0,
                 score_diff=max([abs(float(exported['scores'][j] - reference['scores'][i])) for _, i, j in pairs]
                                + [0.0]),
                 mask_iou=1.0)
    if 'masks' in reference and 'masks' in exported:
        worst['mask_iou'] = min([mask_iou(reference['masks'][i], exported['masks'][j]) for _, i, j in pairs] + [1.0])
    # the other way round: an exported detection clearly above the threshold that nothing in PyTorch explains
    extra = sum(1 for j, s in enumerate(exported['scores']) if j not in taken_j and s >= score_thr + score_tol)
    return dict(reference=len(wanted), paired=len(pairs), unexplained=extra, **worst)

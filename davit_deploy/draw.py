"""Pictures of the predictions, drawn with OpenCV as the PyTorch path draws them with the task repos' visualizers:
small images enlarged by a whole factor so that labels stay legible; boxes with class and score and masks blended
over the image (alpha 0.8, as mmdet's DetLocalVisualizer); the class map blended over the image (alpha 0.6) with
each class's name on its largest region; the top-5 classes in the corner."""
import cv2
import numpy as np

VIS_MIN_SIZE = 512


def _enlarge(img, *maps):
    k = -(-VIS_MIN_SIZE // min(img.shape[:2])) if min(img.shape[:2]) < VIS_MIN_SIZE else 1
    if k == 1:
        return (img, *maps)
    size = (img.shape[1] * k, img.shape[0] * k)
    return (cv2.resize(img, size, interpolation=cv2.INTER_NEAREST),
            *[cv2.resize(m.astype(np.int32), size, interpolation=cv2.INTER_NEAREST) for m in maps])


def _color(palette, label):
    """BGR of a class (white for a label the palette lacks)."""
    rgb = palette[label] if 0 <= label < len(palette) else (255, 255, 255)
    return tuple(int(c) for c in rgb[::-1])


def _name(classes, label):
    return classes[label] if 0 <= label < len(classes) else str(label)


def _text(img, text, org, scale=0.8):
    """White text on a dark box, as the task repos' visualizers label."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    x, y = max(0, org[0]), max(h + 4, org[1])
    cv2.rectangle(img, (x - 3, y - h - 4), (x + w + 3, y + base), (40, 40, 40), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)


def segmentation(img_bgr, seg_map, classes, palette, alpha=0.6):
    img, seg = _enlarge(img_bgr, seg_map)
    color = np.zeros_like(img)
    for label in np.unique(seg):
        color[seg == label] = _color(palette, label)
    out = (img * (1 - alpha) + color * alpha).astype(np.uint8)
    for label in np.unique(seg):
        n, comps, stats, centroids = cv2.connectedComponentsWithStats((seg == label).astype(np.uint8))
        if n > 1:
            biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x, y = centroids[biggest]
            name = _name(classes, label)
            _text(out, name, (int(x) - 7 * len(name), int(y)))
    return out


def classification(img_bgr, top, classes):
    (img,) = _enlarge(img_bgr)
    out = img.copy()
    for row, (label, score) in enumerate(top):
        _text(out, f'{_name(classes, label)}: {score:.2f}', (8, 30 + 32 * row))
    return out


def detection(img_bgr, pred, classes, palette, score_thr=0.3, alpha=0.8):
    keep = [i for i, s in enumerate(pred['scores']) if s >= score_thr]
    masks = [pred['masks'][i] for i in keep] if 'masks' in pred else []
    img, *masks = _enlarge(img_bgr, *masks)
    k = img.shape[0] // img_bgr.shape[0]
    out = img.astype(np.float32)
    for i, m in zip(keep, masks):
        out[m > 0] = out[m > 0] * (1 - alpha) + np.array(_color(palette, int(pred['labels'][i])), np.float32) * alpha
    out = out.astype(np.uint8)
    for m in masks:  # white outlines, as mmdet's visualizer: touching instances of one class stay apart
        contours, _ = cv2.findContours((m > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 2)
    for i in keep:
        label = int(pred['labels'][i])
        x0, y0, x1, y1 = (int(round(v * k)) for v in pred['boxes'][i])
        cv2.rectangle(out, (x0, y0), (x1, y1), _color(palette, label), 2)
        _text(out, f'{_name(classes, label)}: {pred["scores"][i]:.2f}', (x0, y0 - 4), scale=0.6)
    return out


def picture(task, img_bgr, pred, classes, palette, score_thr=0.3):
    """A deployed model's prediction (``DeployedModel.predict``) drawn as its task's PyTorch visualizer draws it."""
    if task == 'mmpretrain':
        return classification(img_bgr, pred['top'], classes)
    if task == 'mmdet':
        return detection(img_bgr, pred, classes, palette, score_thr)
    return segmentation(img_bgr, pred['seg_map'], classes, palette)

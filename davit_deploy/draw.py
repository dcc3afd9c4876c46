"""Pictures of the predictions, drawn with OpenCV as the PyTorch path draws them with the task repos' visualizers:
small images enlarged by a whole factor so that labels stay legible, the class map blended over the image
(alpha 0.6) with each class's name on its largest region, the top-5 classes in the corner."""
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
        rgb = palette[label] if 0 <= label < len(palette) else (255, 255, 255)
        color[seg == label] = rgb[::-1]
    out = (img * (1 - alpha) + color * alpha).astype(np.uint8)
    for label in np.unique(seg):
        n, comps, stats, centroids = cv2.connectedComponentsWithStats((seg == label).astype(np.uint8))
        if n > 1:
            biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x, y = centroids[biggest]
            name = classes[label] if 0 <= label < len(classes) else str(label)
            _text(out, name, (int(x) - 7 * len(name), int(y)))
    return out


def classification(img_bgr, top, classes):
    (img,) = _enlarge(img_bgr)
    out = img.copy()
    for row, (label, score) in enumerate(top):
        name = classes[label] if 0 <= label < len(classes) else str(label)
        _text(out, f'{name}: {score:.2f}', (8, 30 + 32 * row))
    return out

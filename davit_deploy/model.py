"""A deployed folder as one object: read ``deploy.json``, open ``model.onnx``, predict an image at its own size."""
import json
import os.path as osp

import cv2
import numpy as np

from .detection import postprocess as detections
from .preprocess import preprocess

FORMAT = 'mmdavit-deploy/1'  # what mmdavit.deploy writes
TASKS = ('mmpretrain', 'mmseg', 'mmdet')
TOPK = 5


class DeployedModelError(ValueError):
    """A folder, image or size the deployed model cannot take; the message says what to do."""


def read_image(path: str) -> np.ndarray:
    """BGR uint8, as mmcv's LoadImageFromFile (cv2 backend) decodes."""
    data = np.fromfile(path, dtype=np.uint8) if osp.isfile(path) else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise DeployedModelError(f'cannot decode image {path!r}: not an image, or a damaged file')
    return img


def onnx_session(path: str, threads: int = 0, device: str = 'cpu'):
    """An onnxruntime session for ``path``: CPU, or CUDA first when asked (and available); onnxruntime's per-node
    warnings silenced, which say nothing a user can act on."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda'):
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise DeployedModelError('--device cuda: this onnxruntime has no CUDA provider; install '
                                     'onnxruntime-gpu or use --device cpu')
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(path, options, providers=providers)


class DeployedModel:
    def __init__(self, folder: str, threads: int = 0, device: str = 'cpu'):
        meta_path = osp.join(folder, 'deploy.json')
        if not osp.isfile(meta_path):
            raise DeployedModelError(f'{folder!r} is no deployed model (no deploy.json): make one with '
                                     'tools/deploy.py CONFIG CKPT --out DIR')
        try:
            with open(meta_path) as f:
                self.meta = json.load(f)
        except (OSError, ValueError) as e:
            raise DeployedModelError(f'{meta_path} is unreadable ({e}): export the model again') from None
        if self.meta.get('format') != FORMAT or self.meta.get('task') not in TASKS:
            raise DeployedModelError(f'{meta_path} is not a {FORMAT} file for {"/".join(TASKS)}: export the model '
                                     'again with this version of tools/deploy.py')
        self.folder, self.task = folder, self.meta['task']
        self.classes = list(self.meta.get('classes') or [])
        self.session = onnx_session(osp.join(folder, self.meta['model']), threads, device)
        self.input_name = self.session.get_inputs()[0].name
        # detectors take each image's size before padding too (mmdet clips boxes to it)
        self.size_name = self.meta['input'].get('size_input')
        self.output_names = [o.name for o in self.session.get_outputs()]

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def preprocess(self, img: np.ndarray, name: str = 'the image'):
        x, (h, w) = preprocess(img, self.meta['preprocess'])
        lo, hi = self.meta['input']['min_size'], self.meta['input']['max_size']
        if not (lo <= x.shape[2] <= hi and lo <= x.shape[3] <= hi):
            raise DeployedModelError(f'{name} is {x.shape[2]} x {x.shape[3]} after preprocessing; this model takes '
                                     f'{lo} to {hi} pixels a side: export it again with a wider range '
                                     '(tools/deploy.py --min-size/--max-size)')
        return x, (h, w)

    def run(self, x: np.ndarray, size=None) -> dict:
        """The graph's outputs by name for a preprocessed batch; ``size``: each image's (h, w) before padding, for
        a detector (default: the batch's own size)."""
        feed = {self.input_name: x}
        if self.size_name:
            size = np.asarray(size if size is not None else [x.shape[2:]] * x.shape[0], np.int64).reshape(-1, 2)
            feed[self.size_name] = size
        return dict(zip(self.output_names, self.session.run(None, feed)))

    def predict(self, path_or_img) -> dict:
        img = read_image(path_or_img) if isinstance(path_or_img, str) else path_or_img
        name = path_or_img if isinstance(path_or_img, str) else 'the image'
        x, (h, w) = self.preprocess(img, name)
        out = self.run(x, [(h, w)])
        pred = dict(height=int(img.shape[0]), width=int(img.shape[1]))
        if self.task == 'mmdet':
            pred.update(detections(out, (h, w), img.shape[:2], self.meta.get('postprocess', {}).get(
                'mask_thr_binary', 0.5)))
        elif self.task == 'mmpretrain':
            scores = out['scores'][0]
            order = np.argsort(-scores, kind='stable')[:TOPK]
            pred['scores'] = scores
            pred['top'] = [(int(i), float(scores[i])) for i in order]
        else:
            pred['seg_map'] = self._seg_map(out, (h, w), img.shape[:2])
        return pred

    def _seg_map(self, out: dict, resized, original) -> np.ndarray:
        """mmseg's postprocess_result: the logits cropped to the unpadded image and, when the pipeline resized it,
        resized (bilinear) to the original before the argmax; otherwise the graph's own class map."""
        (h, w), (h0, w0) = resized, original
        if (h, w) == (h0, w0):
            return out['seg_map'][0, :h, :w].astype(np.int64)
        logits = out['seg_logits'][0, :, :h, :w]
        # cv2 takes at most 512 channels; its bilinear is the half-pixel rule of align_corners=False
        chunks = [cv2.resize(np.ascontiguousarray(logits[i:i + 256].transpose(1, 2, 0)), (w0, h0),
                             interpolation=cv2.INTER_LINEAR).reshape(h0, w0, -1)
                  for i in range(0, logits.shape[0], 256)]
        return np.concatenate(chunks, axis=2).argmax(2).astype(np.int64)

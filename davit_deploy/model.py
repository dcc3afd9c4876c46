"""A deployed folder as one object: read ``deploy.json`` (``folder``), open ``model.onnx`` with the session settings
it records, predict an image at its own size."""
import os
import os.path as osp

import cv2
import numpy as np

from . import folder as deploy_folder
from .detection import postprocess as detections
from .errors import DeviceError
from .images import read_image
from .preprocess import check_size, preprocess

TOPK = 5


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container or taskset narrows, else all), or fewer
    where ``OMP_NUM_THREADS`` says so: the thread count a user gives torch holds for onnxruntime too, whose own pool
    would otherwise take every core and spin beside the other processes sharing them."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    omp = os.environ.get('OMP_NUM_THREADS', '')
    return min(cpus, int(omp)) if omp.isdigit() and int(omp) > 0 else cpus


def session_options(settings: dict = None, threads: int = 0):
    """onnxruntime's SessionOptions from deploy.json's settings (``folder.session_settings``; default: onnxruntime's
    own defaults, as a folder without them ran); ``threads`` > 0 overrides the intra-op count."""
    import onnxruntime as ort
    s = dict(deploy_folder.DEFAULT_SESSION, **(settings or {}))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = {
        'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[s['graph_optimization_level']]
    intra = threads if threads > 0 else usable_cpus() if s['intra_op_num_threads'] == -1 else s['intra_op_num_threads']
    if intra:
        options.intra_op_num_threads = intra
    if s['inter_op_num_threads']:
        options.inter_op_num_threads = s['inter_op_num_threads']
    options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if s['execution_mode'] == 'parallel'
                              else ort.ExecutionMode.ORT_SEQUENTIAL)
    options.enable_cpu_mem_arena = s['enable_cpu_mem_arena']
    options.enable_mem_pattern = s['enable_mem_pattern']
    if not s['allow_spinning']:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return options


def onnx_session(path: str, threads: int = 0, device: str = 'cpu', settings: dict = None):
    """An onnxruntime session for ``path`` with ``settings`` (deploy.json's, see ``session_options``): CPU, or CUDA
    first when asked (and available); onnxruntime's per-node warnings silenced, which say nothing a user can act
    on."""
    import onnxruntime as ort
    options = session_options(settings, threads)
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda'):
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise DeviceError(device, ort.get_available_providers())
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(path, options, providers=providers)


class DeployedModel:
    def __init__(self, folder: str, threads: int = 0, device: str = 'cpu'):
        self.meta = deploy_folder.read(folder)
        self.folder, self.task = folder, self.meta['task']
        self.classes = list(self.meta.get('classes') or [])
        self.palette = deploy_folder.palette_for(self.classes, self.meta.get('palette'))
        self.settings = deploy_folder.session_settings(self.meta)
        self.session = onnx_session(osp.join(folder, self.meta['model']), threads, device, self.settings)
        self.input_name = self.session.get_inputs()[0].name
        # detectors take each image's size before padding too (mmdet clips boxes to it)
        self.size_name = self.meta['input'].get('size_input')
        self.output_names = [o.name for o in self.session.get_outputs()]

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)

    def preprocess(self, img: np.ndarray, name: str = 'the image'):
        x, (h, w) = preprocess(img, self.meta['preprocess'])
        check_size(x, self.meta['input']['min_size'], self.meta['input']['max_size'], name)
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

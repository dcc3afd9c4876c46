"""What ``tools/benchmark.py`` times: the models side by side (our DaViT with its CPU fast paths, the same with every
path off, timm's, mmpretrain's; our DaViT-T Mask R-CNN and mmdet's Swin-T one), one step of each (inference or a
training step, eager or compiled; our model exported and run in onnxruntime, fp32 or with its backbone int8), and
the interleaved timing that measures them. The tool parses, runs these and prints.

``ours`` is given timm's weights through the converter (``load_pretrained``), so that both compute the same;
mmpretrain's module has random weights of the same shapes: speed does not depend on the values.
"""
import ctypes
import ctypes.util
import os
import statistics
import sys
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from davit_backbone import DaViT, kernels, load_pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ['DTYPES', 'PEAK_TFLOPS', 'TASK_MODELS', 'build_ours', 'build_models', 'build_task_models', 'make_step',
           'make_task_step', 'make_onnx_step', 'make_detector_onnx_step', 'make_segmentor_onnx_step', 'plain_step',
           'time_interleaved', 'keep_freed_memory', 'allocator_setting', 'minor_faults', 'MALLOC_ENV']

# glibc's malloc settings read at process start, which do what keep_freed_memory does for a whole process
MALLOC_ENV = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# dense bf16/fp16 tensor-core peaks (TFLOP/s) for the fraction-of-peak column
PEAK_TFLOPS = {'H100': {'bf16': 989.0, 'fp16': 989.0, 'fp32': 67.0}, 'H200': {'bf16': 989.0, 'fp16': 989.0,
                                                                               'fp32': 67.0},
               'A100': {'bf16': 312.0, 'fp16': 312.0, 'fp32': 19.5}}


class MMPretrainClassifier(nn.Module):
    """mmpretrain's DaViT backbone with the official head order (pool, LayerNorm, Linear) for a like-for-like run."""

    def __init__(self, backbone, dim, num_classes=1000):
        super().__init__()
        self.backbone, self.norm, self.fc = backbone, nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.fc(self.norm(self.backbone(x)[-1].mean((2, 3))))


class DenseBackbone(nn.Module):
    """Our DaViT as detectors call it: the four LayerNorm-ed NCHW maps of ``forward_dense``."""

    def __init__(self, arch, with_cp):
        super().__init__()
        self.davit = DaViT(arch, with_head=False, out_indices=(0, 1, 2, 3), with_cp=with_cp, drop_path_rate=0.0)

    def forward(self, x):
        return self.davit.forward_dense(x)


def build_ours(arch, dense, with_cp):
    return DenseBackbone(arch, with_cp) if dense else DaViT(arch, with_cp=with_cp, drop_path_rate=0.0)


def build_models(arch, dense, with_cp, references=True):
    if not references:
        return {'ours': build_ours(arch, dense, with_cp)}  # random weights: speed and memory do not depend on them
    models = {}
    import timm
    ref = timm.create_model(f'davit_{arch}', features_only=dense, **({} if dense else {'num_classes': 1000}))
    if with_cp:
        ref.set_grad_checkpointing(True) if hasattr(ref, 'set_grad_checkpointing') else None
    ours = build_ours(arch, dense, with_cp)
    load_pretrained(ours.davit if dense else ours, ref.state_dict())  # timm's weights through the converter
    models['ours'] = ours
    models['timm'] = ref
    try:
        from mmpretrain.models.backbones.davit import DaViT as MMPDaViT
        # pad_small_map: pad maps smaller than a window, as the official model does (mmpretrain's default shrinks it)
        mmp = MMPDaViT(arch=arch, out_indices=(0, 1, 2, 3) if dense else (3,), drop_path_rate=0.0, with_cp=with_cp,
                       pad_small_map=True)
        mmp.patch_embed.adaptive_padding = None
        mmp.patch_embed.projection.padding = (3, 3)
        models['mmpretrain'] = mmp if dense else MMPretrainClassifier(mmp, ours.embed_dims[-1])
    except Exception as e:  # mmpretrain (and mmcv) are optional
        print(f'[benchmark] mmpretrain not available ({type(e).__name__}); comparing with timm only', file=sys.stderr)
    return models


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def make_step(model, x, mode, dtype, device):
    autocast = _autocast(device, dtype)
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                out = model(x)
            return out
        return step
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        with autocast:
            out = model(x)
            loss = sum(o.float().mean() for o in out) if isinstance(out, (list, tuple)) else out.float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


# whole task models side by side: ours and the task repo's own Swin-T twin (the same FLOPs class), random weights
TASK_MODELS = {
    'maskrcnn': ('mmdet', 'configs/mmdet/mask-rcnn_davit-t_fpn_1x_coco.py',
                 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'),
    'upernet': ('mmseg', 'configs/mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py',
                'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'),
}


def build_task_models(task: str, size):
    """Our DaViT-T Mask R-CNN (``task='maskrcnn'``) or UPerNet (``'upernet'``) and the task repo's own Swin-T one,
    random weights, plus one input batch as ``test_step`` takes it (an image of ``size``, its sample's shapes)."""
    import importlib

    from mmengine.config import Config
    repo, ours, theirs = TASK_MODELS[task]
    importlib.import_module(f'{repo}.utils').register_all_modules(init_default_scope=True)
    MODELS = importlib.import_module(f'{repo}.registry').MODELS
    configs = {'ours': os.path.join(ROOT, ours),
               'swin': os.path.join(os.path.dirname(importlib.import_module(repo).__file__), '.mim/configs', theirs)}
    models = {}
    for name, path in configs.items():
        cfg = Config.fromfile(path).model  # imports the config's custom_imports: ours registers DaViT (mmdet_davit)
        if task == 'maskrcnn':
            cfg.test_cfg.rcnn.score_thr = 0.0  # random heads score every class ~1/80: keep 100 boxes in both
        cfg.backbone.pop('init_cfg', None)
        cfg.backbone.pop('pretrained', None)
        cfg.pop('pretrained', None)
        models[name] = MODELS.build(cfg)
    h, w = size
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    if task == 'maskrcnn':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(meta, scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    else:
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
    data = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)], data_samples=[sample])
    return models, data


def make_task_step(model, data, dtype, device):
    """One ``test_step`` of a whole task model (preprocessing, backbone, neck, heads, post-processing)."""
    model.eval()
    autocast = _autocast(device, dtype)

    def step():
        with torch.no_grad(), autocast:
            return model.test_step(data)
    return step


def _runtime_input(model, data):
    """The benchmark's image as the deployed runtime feeds a task graph, made afresh at each call as the runtime makes
    it: channels converted as the model's data preprocessor converts them, mean and std applied, batched."""
    import numpy as np
    pre = model.data_preprocessor
    img = data['inputs'][0].numpy().astype(np.float32)
    mean, std = pre.mean.numpy().astype(np.float32), pre.std.numpy().astype(np.float32)
    # mmdet's preprocessor keeps the switch private, mmseg's public
    flip = getattr(pre, 'channel_conversion', getattr(pre, '_channel_conversion', False))
    return lambda: (((img[::-1] if flip else img) - mean) / std)[None]


def make_detector_onnx_step(model, data, size, int8=None):
    """Our Mask R-CNN exported whole (at half the benchmark's size: the graph is dynamic), run as the deployed
    runtime runs it: normalise, the graph, then boxes and pasted masks (davit_deploy.detection)."""
    import tempfile

    import numpy as np

    from davit_backbone.export import onnx_session
    from davit_deploy.detection import postprocess
    from mmdavit.export.detector_graph import DetectorGraph, export_detector
    path = os.path.join(tempfile.mkdtemp(prefix='davit-bench-'), 'maskrcnn.onnx')
    export_detector(DetectorGraph(model.eval()), path, (size[0] // 2, size[1] // 2))
    normalised, image_size = _runtime_input(model, data), np.array([size], np.int64)
    if int8:
        path = _quantized(path, int8, dict(input=normalised(), image_size=image_size))
    session = onnx_session(path, threads=torch.get_num_threads())
    names = [o.name for o in session.get_outputs()]

    def step():
        out = dict(zip(names, session.run(None, {'input': normalised(), 'image_size': image_size})))
        return postprocess(out, size, size)
    return step


def make_segmentor_onnx_step(model, data, size, int8=None):
    """Our UPerNet exported as tools/deploy.py exports it (mmdavit.export.graphs.SegmentorGraph, at half the
    benchmark's size: the graph is dynamic), run as the deployed runtime runs it: normalise, then the graph (logits
    and class map at input size, which is the image's here)."""
    import tempfile

    from davit_backbone.export import export_onnx, onnx_session
    from mmdavit.export.graphs import SegmentorGraph
    path = os.path.join(tempfile.mkdtemp(prefix='davit-bench-'), 'upernet.onnx')
    graph = SegmentorGraph(model.eval())
    export_onnx(graph, path, torch.randn(1, 3, max(33, size[0] // 2), max(33, size[1] // 2)), dynamo=False,
                output_names=graph.output_names)
    normalised = _runtime_input(model, data)
    if int8:
        path = _quantized(path, int8, dict(input=normalised()))
    session = onnx_session(path, threads=torch.get_num_threads())
    return lambda: session.run(None, {'input': normalised()})


def _quantized(path, method, feed, **scope):
    """``path``'s graph with its backbone int8, as tools/deploy.py --int8 writes it (static: calibrated on
    ``feed``); ``scope``: where the backbone's nodes are (mmdavit.export.quantize; a task model's by default)."""
    from mmdavit.export.quantize import quantize
    dst = path[:-len('.onnx')] + '-int8.onnx'
    quantize(path, dst, method, [feed], **scope)
    return dst


def make_onnx_step(model, x, int8=None):
    """Ours exported at half the benchmark's size (the graph is dynamic: it is timed at the full one)."""
    import tempfile
    from davit_backbone.export import export_onnx, onnx_session
    path = os.path.join(tempfile.mkdtemp(prefix='davit-bench-'), 'ours.onnx')
    example = torch.randn(1, 3, max(33, x.shape[2] // 2), max(33, x.shape[3] // 2))
    export_onnx(model, path, example, dynamo=False)
    if int8:
        # a bare DaViT's nodes are named /stages/..., a task model's backbone's /backbone/...
        path = _quantized(path, int8, {'input': x.numpy()}, scope='/stages/')
    session = onnx_session(path, threads=torch.get_num_threads())
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


def plain_step(step):
    def plain():
        with kernels.disabled():
            return step()
    return plain


def minor_faults() -> Optional[int]:
    """The process's minor page faults so far (all threads): each is a 4 KiB page of a fresh buffer touched for the
    first time. None where the platform does not count them."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory for the next allocation instead of handing it back to the kernel.

    By default glibc serves a buffer above its mmap threshold (adaptive, at most 32 MiB) with a fresh mapping and
    unmaps it when freed, and trims its heap once more than twice that threshold is free at the top: a model that
    makes such buffers pays their page faults again on every step, and how many it pays depends on the process's
    allocation history, not only on the model. With the threshold at its maximum, trimming off and 64 MiB of heap
    padding, freed buffers are reused without faults. Returns False where malloc is not glibc's (musl, macOS,
    Windows); the environment variables ``MALLOC_ENV`` do the same for a whole process from its start
    (docs/performance.md)."""
    name = ctypes.util.find_library('c')
    if not name or not sys.platform.startswith('linux'):
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, 'mallopt') or not hasattr(libc, 'gnu_get_libc_version'):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)
                and libc.mallopt(m_top_pad, 64 << 20))


def allocator_setting(kept: bool) -> str:
    """What the benchmark's JSON says of the allocator: freed memory kept (``keep_freed_memory`` succeeded), the
    ``MALLOC_ENV`` variables set in the environment, or the default."""
    if kept:
        return 'glibc, freed memory kept'
    tuned = sorted(k for k in MALLOC_ENV if k in os.environ)
    return f"glibc, {', '.join(tuned)} set" if tuned else 'default'


def time_interleaved(steps: Dict[str, Callable], rounds: int, iters: int,
                     device) -> Tuple[Dict[str, float], Dict[str, Optional[float]]]:
    """The median seconds of one call of each step, and its median minor page faults (None where not counted).
    Each round times every step once, so that drifts (thermal, other load) hit all alike."""
    times = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            f0, t0 = minor_faults(), time.perf_counter()
            for _ in range(iters):
                step()
            sync(device)
            times[name].append((time.perf_counter() - t0) / iters)
            if f0 is not None:
                faults[name].append((minor_faults() - f0) / iters)
    return ({name: statistics.median(t) for name, t in times.items()},
            {name: statistics.median(f) if f else None for name, f in faults.items()})

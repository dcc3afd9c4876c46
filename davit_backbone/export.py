"""ONNX export of DaViT, or of any module built around it that takes one image batch, with batch, height and width
dynamic: the graph runs at sizes it never saw at export, odd ones included (every pad is in the graph).

Both of torch's exporters:

- ``dynamo=True`` (torch's default since 2.9): ``torch.export`` then ONNX translation. ``torch.export`` cannot prove
  facts like ``ceil(h / 7) * 7 >= h`` for the window padding's symbolic sizes and would refuse the dynamic dims (or
  specialise them to the example's size, the trap ``torch.onnx.export(model, dynamo=True, dynamic_shapes=...)``
  falls into); ``prefer_deferred_runtime_asserts_over_guards`` keeps such facts as runtime checks instead, which
  hold for every size. Smallest input: 33 x 33 (``DYNAMO_MIN_SIZE``): at 32 or less the last stage's map is 1 x 1,
  and torch's convolution rules, which the export records, branch on a size of 1.
- ``dynamo=False``: the TorchScript exporter with ``dynamic_axes``; any size.

The CPU fast paths (``kernels.py``) stay out of both: they step aside under tracers and compilers.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

__all__ = ['DYNAMO_MIN_SIZE', 'DenseFeatures', 'export_onnx', 'example_input', 'onnx_session', 'run_onnx']

DYNAMO_MIN_SIZE = 33
MAX_SIZE = 8192
DEFAULT_OPSET = 18


class DenseFeatures(nn.Module):
    """``DaViT.forward_dense`` as a module's forward (the four LayerNorm-ed maps of a detection backbone), for an
    exporter that calls ``forward``."""

    def __init__(self, davit: nn.Module):
        super().__init__()
        self.davit = davit

    def forward(self, x: torch.Tensor):
        return self.davit.forward_dense(x)


def example_input(batch: int = 2, height: int = 448, width: int = 480, in_chans: int = 3) -> torch.Tensor:
    """The export's example batch. ``torch.export`` specialises every size that is 1 in the example (its 0/1 rule),
    so the default gives a batch of 2 and a size at which every stage has more than one window each way."""
    return torch.randn(batch, in_chans, height, width)


def export_onnx(model: nn.Module, path: str, example: Optional[torch.Tensor] = None, *, dynamo: bool = True,
                opset: Optional[int] = None, input_name: str = 'input', output_names: Optional[Sequence[str]] = None,
                dynamic_batch: bool = True, min_size: Optional[int] = None, max_size: int = MAX_SIZE) -> str:
    """Writes ``model`` (called as ``model(images)``, in eval mode) to ``path`` as ONNX with dynamic batch (unless
    ``dynamic_batch=False``), height and width. ``min_size`` / ``max_size`` bound H and W for the dynamo exporter
    (default ``DYNAMO_MIN_SIZE``); the TorchScript exporter takes any size. Returns ``path``."""
    model = model.eval()
    example = example_input() if example is None else example
    kwargs = dict(input_names=[input_name], opset_version=opset or DEFAULT_OPSET)
    if output_names:
        kwargs['output_names'] = list(output_names)
    with torch.no_grad():
        if dynamo:
            dims = {2: torch.export.Dim('height', min=min_size or DYNAMO_MIN_SIZE, max=max_size),
                    3: torch.export.Dim('width', min=min_size or DYNAMO_MIN_SIZE, max=max_size)}
            if dynamic_batch:
                dims[0] = torch.export.Dim('batch', min=1, max=1024)
            program = torch.export.export(model, (example,), dynamic_shapes=(dims,), strict=False,
                                          prefer_deferred_runtime_asserts_over_guards=True)
            # one file, as the TorchScript exporter writes, unless the weights pass protobuf's 2 GiB limit
            big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8 * 2 ** 30
            torch.onnx.export(program, (example,), path, dynamo=True, verbose=False, external_data=big, **kwargs)
        else:
            axes = {2: 'height', 3: 'width'}
            if dynamic_batch:
                axes[0] = 'batch'
            torch.onnx.export(model, (example,), path, dynamo=False, dynamic_axes={input_name: axes}, **kwargs)
    return path


def onnx_session(path: str, threads: Optional[int] = None, spinning: bool = False):
    """An onnxruntime CPU session for ``path``, to check or time an export against the model (onnxruntime is needed
    only here). Opened with onnxruntime itself: this package does not import the deployed runtime (``davit_deploy``),
    whose own sessions are what ``tools/deploy.py`` verifies a deployed folder in. ``spinning=False`` (the deployed
    folders' setting, ``davit_deploy.folder.TASK_SESSION``): idle pool threads sleep instead of spinning, which on a
    shared CPU made onnxruntime up to a fifth faster, so ``tools/benchmark.py --onnx`` times what a folder runs."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its per-node warnings say nothing a user can act on
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnx(session, images) -> list:
    """The session's outputs for one image batch (a tensor or a numpy array), as numpy arrays."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return session.run(None, {session.get_inputs()[0].name: images})

"""int8 for a deployed graph: onnxruntime's quantisation (``onnxruntime.quantization``) of the fp32 graph
``tools/deploy.py`` exported and verified.

What is quantised, and how (chosen by measurement on an AVX2 EPYC without VNNI; docs/deployment.md#int8):

- only the backbone's Linear layers (``MatMul`` with a weight: 87% of DaViT's FLOPs). Its convolutions (stem,
  downsampling, the depthwise position encodings), attention's products of two activations, LayerNorm, softmax,
  GELU, and everything after the backbone (neck, heads, a detector's NMS, RoIAlign and box decoding, a segmenter's
  resize) stay fp32. Measured: the convolutions as well took a toy UPerNet's class maps from >= 98.8% to >= 95.5%
  of pixels equal to PyTorch's (static); the neck and heads as well (toy Mask R-CNN, static) gained a few percent
  of speed and doubled the worst box and mask error;
- weights int8, one scale per output channel, in 7 bits (``reduce_range``): without VNNI, x86's u8 x s8 dot product
  (``vpmaddubsw``) adds pairs of products into 16 bits and saturates on full-range weights; activations uint8
  (onnxruntime's advice for x86 CPUs);
- ``dynamic`` (the default of ``tools/deploy.py --int8``): ``MatMulInteger``, each activation's range taken at run
  time, no calibration. On the AVX2 EPYC it ran as fast as ``static`` and agreed ten times closer with PyTorch;
- ``static``: QDQ format (``QuantizeLinear``/``DequantizeLinear`` pairs onnxruntime fuses into its integer kernels
  when the session opens), activation ranges fixed by MinMax calibration on the batches given (``tools/deploy.py``:
  the verification images): no range computed per run (onnxruntime's recommended form for CPUs with VNNI; not
  measured here), but an image whose activations leave the calibrated range is clipped.

The backbone's nodes are found by name: the TorchScript exporter names each node after the module that wrote it
(``/backbone/stages/stages.2/...``).
"""
import logging
import os
import os.path as osp
from typing import Iterable, List, Sequence

from davit_deploy.folder import QUANT_METHODS

__all__ = ['QuantizeError', 'METHODS', 'MIN_OPSET', 'backbone_nodes', 'quantize']

METHODS = QUANT_METHODS  # ('dynamic', 'static'): deploy.json's quantization.method
MIN_OPSET = 13  # QuantizeLinear / DequantizeLinear with an axis: per-channel weights
OP_TYPES = ('MatMul', )
BACKBONE = '/backbone/'


class QuantizeError(ValueError):
    """A graph or setting this module cannot quantise. ``problem``: one of the class's constants."""

    OPSET = 'opset'            # the graph's opset is older than MIN_OPSET
    NO_NODES = 'no nodes'      # no backbone MatMul found by name (a graph of another exporter)
    NO_DATA = 'no data'        # static, without calibration batches
    FAILED = 'failed'          # onnxruntime's quantiser raised

    def __init__(self, problem: str, message: str):
        self.problem = problem
        super().__init__(message)


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)


def backbone_nodes(model, op_types: Sequence[str] = OP_TYPES, scope: str = BACKBONE) -> List[str]:
    """Names of the nodes to quantise in ``model`` (an ``onnx.ModelProto``): the backbone's nodes (their names
    hold ``scope``) of ``op_types``, MatMuls only where their second input is a weight (an initializer), not
    attention's products of two activations."""
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if scope in n.name and n.op_type in op_types and (
        n.op_type != 'MatMul' or n.input[1] in weights)]


class _Batches:
    """onnxruntime's CalibrationDataReader over a list of feeds (input name -> array)."""

    def __init__(self, feeds: Sequence[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # not needed by MinMax, part of the interface in newer onnxruntime
        pass


def quantize(src: str, dst: str, method: str = 'dynamic', feeds: Iterable[dict] = (), scope: str = BACKBONE) -> dict:
    """Writes ``src`` (an fp32 ONNX file) quantised to ``dst`` by ``method`` (``METHODS``); ``static`` is calibrated
    on ``feeds`` (each a dict of input name -> numpy array: the graph's inputs for one batch). ``scope``: what the
    names of the backbone's nodes hold (a bare DaViT's: ``/stages/``). Returns the settings, as deploy.json records
    them."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    if method not in METHODS:
        raise ValueError(f'method {method!r}: one of {", ".join(METHODS)}')
    feeds = list(feeds) if method == 'static' else []
    if method == 'static' and not feeds:
        raise QuantizeError(QuantizeError.NO_DATA, 'static quantisation needs calibration images')
    model = onnx.load(src, load_external_data=False)
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise QuantizeError(QuantizeError.OPSET, f'the graph is opset {opset}; per-channel int8 weights need opset '
                            f'{MIN_OPSET} or newer')
    op_types = OP_TYPES
    nodes = backbone_nodes(model, op_types, scope)
    if not nodes:
        raise QuantizeError(QuantizeError.NO_NODES, 'no backbone MatMul found by name in the graph (the '
                            'TorchScript exporter names nodes after their modules)')
    types = {n.name: n.op_type for n in model.graph.node}
    counts = {t: sum(1 for n in nodes if types[n] == t) for t in op_types}
    del model

    class Reader(_Batches, CalibrationDataReader):
        pass

    logger = logging.getLogger()  # the quantiser's advice to pre-process goes to the root logger, once per call
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        if method == 'static':
            quantize_static(src, dst, Reader(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                            nodes_to_quantize=nodes, per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        else:
            quantize_dynamic(src, dst, op_types_to_quantize=list(op_types), nodes_to_quantize=nodes,
                             per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    except Exception as e:  # noqa: BLE001  onnxruntime's own errors, of many types: one typed error
        if osp.exists(dst):
            os.remove(dst)
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise QuantizeError(QuantizeError.FAILED, f'onnxruntime could not quantise the graph ({type(e).__name__}: '
                            f'{lines[0][:300] if lines else ""})') from e
    finally:
        logger.setLevel(level)
    settings = dict(method=method, scope='backbone', op_types=list(op_types), quantized_nodes=counts,
                    weights='int8, per output channel, 7-bit (reduce_range)',
                    activations='uint8, range per run' if method == 'dynamic' else 'uint8, per tensor, calibrated')
    if method == 'static':
        settings.update(format='QDQ', calibration='minmax', calibration_batches=len(feeds))
    return settings

"""ONNX export at any input size (davit_backbone/export.py): each exported graph is run by onnxruntime at sizes it
never saw at export, odd ones and other batch sizes included, against the PyTorch model."""
import numpy as np
import pytest
import torch

from helpers import dense_davit, randomize_norms

from davit_backbone import DaViT, kernels
from davit_backbone.export import (DYNAMO_MIN_SIZE, DenseFeatures, example_input, export_onnx, onnx_session,
                                   run_onnx)

pytest.importorskip('onnxruntime')

ATOL = 1e-4
# none of these is the export's size; 97 x 61 and 33 x 40 pad at every stage; batch 3 was never seen either
UNSEEN = [(1, 97, 61), (3, 33, 40), (2, 250, 333)]
# Florence-2's options (windows of 12, 3x3 downsampling, channel attention v2) on a small width
SMALL_FL = dict(embed_dims=(32, 64, 128, 256), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=12,
                down_kernel_size=3, channel_attn_v2=True)


def assert_onnx_matches(model, path, sizes=UNSEEN):
    session = onnx_session(path)
    for b, h, w in sizes:
        x = torch.randn(b, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
        out = run_onnx(session, x)
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            assert o.shape == tuple(r.shape), (b, h, w)
            err = float(np.abs(o - r.numpy()).max())
            assert err <= ATOL, f'{(b, h, w)}: max abs difference {err}'


@pytest.fixture(scope='module')
def dense_tiny():
    torch.manual_seed(0)
    return DenseFeatures(randomize_norms(dense_davit('tiny'))).eval()


def test_torchscript_exporter_dense_backbone_any_size(dense_tiny, tmp_path):
    path = export_onnx(dense_tiny, str(tmp_path / 'dense.onnx'), example_input(1, 64, 96), dynamo=False)
    assert_onnx_matches(dense_tiny, path)


@pytest.mark.slow
def test_dynamo_exporter_dense_backbone_any_size(dense_tiny, tmp_path):
    path = export_onnx(dense_tiny, str(tmp_path / 'dense.onnx'), dynamo=True)
    assert_onnx_matches(dense_tiny, path, UNSEEN + [(1, DYNAMO_MIN_SIZE, DYNAMO_MIN_SIZE)])
    # the input's declared dims are symbolic, not the example's numbers
    dims = onnx_session(path).get_inputs()[0].shape
    assert isinstance(dims[0], str) and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)


def test_classifier_logits_any_size(tmp_path, seed):
    model = randomize_norms(DaViT('tiny', num_classes=10)).eval()
    path = export_onnx(model, str(tmp_path / 'cls.onnx'), example_input(1, 64, 96), dynamo=False)
    assert_onnx_matches(model, path, [(2, 224, 224), (1, 97, 61)])


@pytest.mark.parametrize('dynamo', [False, True], ids=['torchscript', 'dynamo'])
def test_florence2_options_export(tmp_path, seed, dynamo):
    """Channel attention v2's scale N ** -0.5 comes from the input's token count: a tracer that baked in the
    export's N would give other numbers at every other size."""
    model = DenseFeatures(randomize_norms(DaViT(SMALL_FL, with_head=False, out_indices=(0, 1, 2, 3)))).eval()
    path = export_onnx(model, str(tmp_path / 'fl.onnx'), example_input(2, 448, 480) if dynamo else
                       example_input(1, 64, 96), dynamo=dynamo)
    assert_onnx_matches(model, path)


def test_timm_features_only_and_intermediates_export(tmp_path, seed):
    timm = pytest.importorskip('timm')
    feats = timm.create_model('DaViT_tiny', features_only=True).eval()
    assert_onnx_matches(feats, export_onnx(feats, str(tmp_path / 'feats.onnx'), example_input(1, 64, 96),
                                           dynamo=False), [(1, 97, 61)])

    class Intermediates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = DaViT('tiny', num_classes=0).eval()

        def forward(self, x):
            final, maps = self.model.forward_intermediates(x, indices=(1, 3))
            return final, *maps

    model = Intermediates().eval()
    assert_onnx_matches(model, export_onnx(model, str(tmp_path / 'inter.onnx'), example_input(1, 64, 96),
                                           dynamo=False), [(2, 97, 61)])


def test_cpu_kernels_stay_out_of_export(dense_tiny, tmp_path, monkeypatch):
    calls = []
    real = kernels.sub_block
    monkeypatch.setattr(kernels, 'sub_block', lambda *a: calls.append(1) or real(*a))
    export_onnx(dense_tiny, str(tmp_path / 'dense.onnx'), example_input(1, 64, 96), dynamo=False)
    assert not calls
    if kernels.ENABLED:  # the same model in eager does take them, so the check above could fail
        with torch.no_grad():
            dense_tiny(torch.randn(1, 3, 64, 64))
        assert calls

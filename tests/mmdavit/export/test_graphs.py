"""mmdavit.export.graphs: the pieces tools/deploy.py assembles (the whole-model graphs are run in
tests/tools/test_deploy.py)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import build_from_config

from mmdavit.export.graphs import DeployError, IntegralAdaptiveAvgPool2d, check_scope, graph_for, preprocess_recipe


@pytest.mark.parametrize('out', [1, 2, 3, 6, (2, 5)])
@pytest.mark.parametrize('hw', [(7, 7), (13, 17), (25, 38), (4, 9)])
def test_integral_pooling_is_adaptive_avg_pool(out, hw, seed):
    x = torch.randn(2, 8, *hw)
    ref = nn.AdaptiveAvgPool2d(out)(x)
    assert torch.allclose(IntegralAdaptiveAvgPool2d(out)(x), ref, atol=1e-5)


def test_integral_pooling_exports_for_any_size(tmp_path, seed):
    pytest.importorskip('onnxruntime')
    from davit_backbone.export import export_onnx, onnx_session, run_onnx
    model = IntegralAdaptiveAvgPool2d(6)
    path = export_onnx(model, str(tmp_path / 'pool.onnx'), torch.randn(1, 4, 20, 24), dynamo=False)
    for hw in [(13, 17), (64, 9)]:
        x = torch.randn(2, 4, *hw)
        assert np.abs(run_onnx(onnx_session(path), x)[0] - nn.AdaptiveAvgPool2d(6)(x).numpy()).max() < 1e-5


def test_segmentor_graph_replaces_pyramid_pooling_and_matches_the_model(seed):
    cfg, model = build_from_config('configs/toy/upernet_davit-t_toy-ade.py')
    model.eval()
    graph, reference = graph_for('mmseg', model), graph_for('mmseg', model, exportable=False)
    pools = [m for m in graph.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, IntegralAdaptiveAvgPool2d))]
    assert {type(m) for m in pools if getattr(m, 'output_size', 1) not in (1, (1, 1))} == {IntegralAdaptiveAvgPool2d}
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())  # the model itself is untouched
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        (a, ma), (b, mb) = graph(x), reference(x)
    assert a.shape == (1, 4, 97, 131) and ma.shape == (1, 97, 131)
    assert torch.allclose(a, b, atol=1e-4) and torch.equal(ma, mb)


def test_recipes_of_the_toy_configs():
    cfg, model = build_from_config('configs/toy/upernet_davit-t_toy-ade.py')
    seg = preprocess_recipe(cfg, model)
    assert seg['pipeline'] == [dict(type='resize', scale=[256, 128], keep_ratio=True, interpolation='bilinear',
                                    backend='cv2')]
    assert seg['to_rgb'] and len(seg['mean']) == 3 and seg['pad'] is None
    cfg, _ = build_from_config('configs/toy/davit-t_toy-imagefolder.py')
    cfg.model.data_preprocessor = cfg.data_preprocessor  # as tools/deploy.py and mmpretrain's get_model do
    from mmengine.registry import MODELS
    cls = preprocess_recipe(cfg, MODELS.build(cfg.model))
    assert [s['type'] for s in cls['pipeline']] == ['resize_edge', 'center_crop']
    assert cls['pipeline'][0]['backend'] == 'pillow' and cls['mean'][0] == pytest.approx(123.675)


def test_unsupported_is_refused_with_what_to_do():
    with pytest.raises(DeployError, match='mmpretrain, mmseg and mmdet'):
        check_scope('mmocr')
    cfg, model = build_from_config('configs/toy/upernet_davit-t_toy-ade.py')
    model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    with pytest.raises(DeployError, match="test_cfg.mode is 'slide'") as e:
        graph_for('mmseg', model)
    assert e.value.cfg_option == 'model.test_cfg.mode=whole' and not e.value.runs_in_pytorch
    cfg.test_pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomCrop', crop_size=(8, 8))]
    with pytest.raises(DeployError, match='RandomCrop'):
        preprocess_recipe(cfg, model)
    # Mask2Former's head needs the images' metadata in forward and predicts per-query masks: refused by name
    _, model = build_from_config('configs/toy/mask2former_davit-t_toy-ade.py')
    with pytest.raises(DeployError, match='Mask2FormerHead') as e:
        graph_for('mmseg', model)
    assert e.value.runs_in_pytorch and e.value.cfg_option is None

"""tools/deploy.py and tools/infer.py DIR end to end: export the toy classifier, segmenter and RetinaNet, run the
folder with onnxruntime in a process where torch and OpenMMLab cannot be imported, and compare its predictions.json
with the PyTorch path's on the same images (the toy images, and copies at other sizes, which the pipeline resizes);
then the bad inputs: one line, exit 2, nothing written.

The checkpoints are seeded random-weight models (what is checked is that both paths compute the same thing); the
trained Mask R-CNN of the quick demo is deployed in tests/tools/test_demo.py, and docs/deployment.md has the
agreement on trained models.
"""
import glob
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from davit_deploy import folder
from helpers import build_from_config, detections_of, python_tool, toy_data

pytest.importorskip('onnxruntime')

CONFIGS = {'seg': 'configs/toy/upernet_davit-t_toy-ade.py', 'cls': 'configs/toy/davit-t_toy-imagefolder.py',
           'det': 'configs/toy/retinanet_davit-t_toy-coco.py'}
TASKS = {'seg': 'mmseg', 'cls': 'mmpretrain', 'det': 'mmdet'}
# the test's own names, so that names visibly travel from the checkpoint into the deployed folder
CLASSES = {'seg': ['sky', 'disc', 'box', 'wedge'], 'cls': ['disc', 'box', 'wedge'], 'det': ['ring', 'tile', 'wedge']}
BLOCKED = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm', 'davit_backbone',
           'mmdavit')


def tool(name, *args):
    module = __import__(name)  # tools/ is on sys.path (conftest)
    return module.main([str(a) for a in args])


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('deploy')


@pytest.fixture(scope='module')
def images(work):
    """Per task: the toy validation images, plus two copies at sizes the pipelines resize (not 128 or 64)."""
    out = {}
    for task, src in (('seg', os.path.join(toy_data('ade'), 'images', 'validation')),
                      ('cls', os.path.join(toy_data('imagenet'), 'val', 'square')),
                      ('det', os.path.join(toy_data('coco'), 'val2017'))):
        d = work / f'{task}_images'
        d.mkdir()
        names = sorted(os.listdir(src))[:4]
        for n in names:
            shutil.copy(os.path.join(src, n), d / n)
        img = cv2.imread(os.path.join(src, names[0]))
        cv2.imwrite(str(d / 'odd_97x61.png'), cv2.resize(img, (61, 97)))
        cv2.imwrite(str(d / 'wide_150x233.png'), cv2.resize(img, (233, 150)))
        out[task] = str(d)
    return out


@pytest.fixture(scope='module')
def ckpts(work):
    out = {}
    for task, cfg in CONFIGS.items():
        torch.manual_seed(0)
        model = build_from_config(cfg)[1]
        if task == 'det':
            # RetinaNet's 0.01 prior would leave no score above its 0.05 threshold; these give each image some ten
            # to thirty boxes above 0.3, short of max_per_img (100), whose cut-off among near-equal random scores
            # could differ between the two paths by a box
            with torch.no_grad():
                model.bbox_head.retina_cls.bias.fill_(-1.4)
                model.bbox_head.retina_cls.weight.mul_(0.1)
        out[task] = str(work / f'{task}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': CLASSES[task]}}},
                   out[task])
    return out


@pytest.fixture(scope='module')
def deployed(work, ckpts):
    out = {}
    for task, cfg in CONFIGS.items():
        out[task] = str(work / f'{task}_deployed')
        # the export's example at 64 x 96, neither the toy images' size nor the generated verification images'
        assert tool('deploy', cfg, ckpts[task], '--out', out[task], '--shape', 64, 96) == 0
    return out


def read(out):
    with open(os.path.join(out, 'predictions.json')) as f:
        return json.load(f)


def blocked_env(tmp):
    """A PYTHONPATH in front of the venv's under which importing torch or any OpenMMLab package fails."""
    for name in BLOCKED:
        os.makedirs(os.path.join(tmp, name), exist_ok=True)
        with open(os.path.join(tmp, name, '__init__.py'), 'w') as f:
            f.write(f'raise ImportError("{name} is blocked: a deployed model must run without it")\n')
    return dict(PYTHONPATH=str(tmp))


def seg_maps(result):
    from pycocotools import mask as mask_utils
    maps = {}
    for im in result['images']:
        m = np.full((im['height'], im['width']), -1)
        for s in im['segments']:
            rle = dict(size=s['mask_rle']['size'], counts=s['mask_rle']['counts'].encode())
            m[mask_utils.decode(rle).astype(bool)] = s['label']
        maps[os.path.basename(im['image'])] = m
    return maps


def test_deploy_writes_the_graph_and_what_inference_needs(deployed):
    for task, d in deployed.items():
        assert sorted(os.listdir(d)) == ['deploy.json', 'model.onnx']
        with open(os.path.join(d, 'deploy.json')) as f:
            meta = json.load(f)
        assert meta['task'] == TASKS[task]
        assert meta['classes'] == CLASSES[task]
        # the session settings chosen for the task, which --verify ran in and the runtime opens with
        assert meta['runtime']['onnxruntime'] == folder.TASK_SESSION[TASKS[task]]
        assert meta['preprocess']['mean'] and meta['preprocess']['to_rgb'] is True
        assert len(meta['verification']) == 3  # the generated images, none at the export's size
        assert all(r['size'] != [64, 96] for r in meta['verification'])
        if task == 'seg':
            assert all(r['pixel_agreement'] >= 0.999 for r in meta['verification'])
        if task == 'det':
            assert meta['input']['size_input'] == 'image_size' and meta['outputs'] == ['dets', 'labels']
            assert meta['preprocess']['pad']['size_divisor'] == 32
            assert sum(r['reference'] for r in meta['verification']) >= 3  # something was compared
            assert all(r['paired'] == r['reference'] and r['box_iou'] >= 0.95 for r in meta['verification'])
        else:
            assert all(r['max_logit_diff'] <= 1e-4 for r in meta['verification'])
    assert not glob.glob(os.path.join(os.path.dirname(d), '*.tmp-*'))


@pytest.mark.parametrize('task', ['seg', 'cls', 'det'])
def test_infer_deployed_folder_without_torch_matches_pytorch(task, deployed, ckpts, images, work):
    onnx_out, torch_out = str(work / f'{task}_ort'), str(work / f'{task}_torch')
    r = python_tool('tools/infer.py', deployed[task], images[task], '--out', onnx_out,
                    env=blocked_env(str(work / 'blocked')))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert tool('infer', CONFIGS[task], ckpts[task], images[task], '--out', torch_out) == 0
    ort, ref = read(onnx_out), read(torch_out)
    assert ort['classes'] == ref['classes'] == CLASSES[task]
    assert len(ort['images']) == len(ref['images']) == 6
    assert sorted(os.listdir(os.path.join(onnx_out, 'vis'))) == sorted(os.listdir(os.path.join(torch_out, 'vis')))
    for a, b in zip(ort['images'], ref['images']):
        assert set(a) == set(b) and (a['height'], a['width']) == (b['height'], b['width'])
    if task == 'seg':
        maps_a, maps_b = seg_maps(ort), seg_maps(ref)
        for name in maps_b:
            assert (maps_a[name] >= 0).all()
            agree = float((maps_a[name] == maps_b[name]).mean())
            assert agree >= 0.999, f'{name}: {agree:.4%} of pixels agree'
    elif task == 'det':
        from davit_deploy.detection import match
        assert ort['score_thr'] == ref['score_thr'] == 0.3
        exported, torch_ = detections_of(ort), detections_of(ref)
        assert sum(len(d['scores']) for d in torch_.values()) >= 6
        for name, want in torch_.items():
            got = exported[name]
            report = match(want, got, 0.3)
            assert report['paired'] == report['reference'] and not report['unexplained'], (name, report)
            assert report['score_diff'] <= 0.02, (name, report)
            if report['box_iou'] < 0.95:
                # predictions.json rounds coordinates to 0.1 px: on a box a pixel wide (random weights make some)
                # one rounding step alone costs IoU 0.92, so there the coordinates must agree within that step
                for i in np.flatnonzero(want['scores'] >= 0.3):
                    near = [np.abs(got['boxes'][j] - want['boxes'][i]).max() for j in range(len(got['scores']))
                            if got['labels'][j] == want['labels'][i]
                            and abs(got['scores'][j] - want['scores'][i]) <= 0.02]
                    assert min(near) <= 0.1 + 1e-4, (name, i, want['boxes'][i], report)
    else:
        for a, b in zip(ort['images'], ref['images']):
            assert [d['label'] for d in a['top5']] == [d['label'] for d in b['top5']], a['image']
            assert np.allclose([d['score'] for d in a['top5']], [d['score'] for d in b['top5']], atol=2e-4)


def test_bad_input_one_line_exit_2_nothing_written(deployed, ckpts, images, work, monkeypatch):
    import _cli as ru
    seg_cfg, seg_ckpt = CONFIGS['seg'], ckpts['seg']
    # an --out that exists is left alone
    r = python_tool('tools/deploy.py', seg_cfg, seg_ckpt, '--out', deployed['seg'])
    assert r.returncode == 2 and 'exists' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(deployed['seg'])) == ['deploy.json', 'model.onnx']
    out = str(work / 'never')
    # a checkpoint of another model
    with pytest.raises(ru.INPUT_ERRORS, match='another model|DaViT'):
        tool('deploy', seg_cfg, ckpts['cls'], '--out', out)
    # a detector through the dynamo exporter, said before any checkpoint is read
    with pytest.raises(ru.UserError, match='detectors'):
        tool('deploy', 'configs/toy/mask-rcnn_davit-t_toy-coco-quick.py', seg_ckpt, '--out', out,
             '--exporter', 'dynamo')
    with pytest.raises(ru.UserError, match='opset 16 or newer'):
        tool('deploy', CONFIGS['det'], ckpts['det'], '--out', out, '--opset', 15)
    # a segmenter's checkpoint for a detector
    with pytest.raises(ru.INPUT_ERRORS, match='another model|DaViT'):
        tool('deploy', CONFIGS['det'], seg_ckpt, '--out', out)
    # an op the exporter refuses: the temporary folder goes too
    import davit_backbone.export as export

    def refuse(*a, **k):
        raise RuntimeError('Exporting the operator aten::foo to ONNX opset version 18 is not supported')
    monkeypatch.setattr(export, 'export_onnx', refuse)
    with pytest.raises(ru.UserError, match='export failed.*aten::foo'):
        tool('deploy', seg_cfg, seg_ckpt, '--out', out)
    assert not os.path.exists(out) and not glob.glob(out + '.tmp-*')

    # the deployed folder: an image bigger than the graph's declared range, a foreign folder
    small = str(work / 'seg_small_range')
    shutil.copytree(deployed['seg'], small)
    with open(os.path.join(small, 'deploy.json')) as f:
        meta = json.load(f)
    meta['input']['max_size'] = 100
    with open(os.path.join(small, 'deploy.json'), 'w') as f:
        json.dump(meta, f)
    r = python_tool('tools/infer.py', small, images['seg'], '--out', out)
    assert r.returncode == 2 and 'after preprocessing' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with open(os.path.join(small, 'deploy.json'), 'w') as f:
        f.write('{"format": "something else"}')
    r = python_tool('tools/infer.py', small, images['seg'], '--out', out)
    assert r.returncode == 2 and 'deploy.json' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(out)


def test_the_librarys_refusals_worded_with_the_flag_or_command_that_gets_past_them():
    import deploy
    from mmdavit.export.graphs import DeployError
    assert deploy.refusal(DeployError("model.test_cfg.mode is 'slide'", cfg_option='model.test_cfg.mode=whole')) \
        == "model.test_cfg.mode is 'slide': pass --cfg-options model.test_cfg.mode=whole"
    assert deploy.refusal(DeployError('DINO with DINOHead: no graph', runs_in_pytorch=True)) \
        == 'DINO with DINOHead: no graph; run this model with tools/infer.py CONFIG CKPT'
    assert deploy.refusal(DeployError('give scale=(w, h)')) == 'give scale=(w, h)'


@pytest.mark.slow
def test_segmenter_through_the_dynamo_exporter(ckpts, images, work):
    out = str(work / 'seg_dynamo')
    assert tool('deploy', CONFIGS['seg'], ckpts['seg'], '--out', out, '--exporter', 'dynamo',
                '--verify', images['seg']) == 0
    assert sorted(os.listdir(out)) == ['deploy.json', 'model.onnx']  # weights inside, as the TorchScript export
    with open(os.path.join(out, 'deploy.json')) as f:
        meta = json.load(f)
    assert meta['source']['exporter'] == 'dynamo' and len(meta['verification']) == 6
    assert all(r['pixel_agreement'] >= 0.999 and r['max_logit_diff'] <= 1e-4 for r in meta['verification'])


def test_int8_folder_runs_in_the_runtime_and_says_how_it_was_quantised(ckpts, deployed, images, work):
    """--int8 (dynamic, the default) on the toy classifier: the folder holds model-int8.onnx, named by deploy.json
    with its quantisation record; the runtime and tools/infer.py DIR run it; it agrees with PyTorch within the
    named int8 tolerances and ranks the classes as the fp32 folder does."""
    from mmdavit.export import verify
    from davit_deploy import DeployedModel
    out = str(work / 'cls_int8')
    assert tool('deploy', CONFIGS['cls'], ckpts['cls'], '--out', out, '--shape', 64, 96, '--int8',
                '--verify', images['cls']) == 0
    assert sorted(os.listdir(out)) == ['deploy.json', folder.INT8_MODEL_FILE]
    meta = folder.read(out)
    q = meta['quantization']
    assert meta['model'] == folder.INT8_MODEL_FILE and q['method'] == 'dynamic' and q['scope'] == 'backbone'
    assert q['op_types'] == ['MatMul'] and q['quantized_nodes'] == {'MatMul': 48}  # DaViT-T's Linear layers
    assert q['tolerances'] == verify.INT8_TOLERANCES and len(q['fp32_verification']) == 6
    assert all(r['max_logit_diff'] <= 1e-4 for r in q['fp32_verification'])
    for r in meta['verification']:  # the int8 graph's: looser than fp32's, within the named tolerance
        assert 1e-4 < r['max_logit_diff'] <= verify.INT8_LOGIT_RTOL * 2 and r['top1_agreement'] == 1.0
    int8, fp32 = DeployedModel(out), DeployedModel(deployed['cls'])
    for name in sorted(os.listdir(images['cls'])):
        a, b = int8.predict(os.path.join(images['cls'], name)), fp32.predict(os.path.join(images['cls'], name))
        assert a['top'][0][0] == b['top'][0][0] and np.abs(a['scores'] - b['scores']).max() < 0.02, name
    assert tool('infer', out, images['cls'], '--out', str(work / 'cls_int8_infer')) == 0
    assert len(read(str(work / 'cls_int8_infer'))['images']) == 6


def test_static_int8_is_calibrated_on_the_batches_given(deployed, images, work):
    """mmdavit.export.quantize's static method (QDQ, MinMax calibration) on the fp32 graph of the deployed classifier;
    no batches, no calibration: a typed error."""
    from davit_deploy import DeployedModel
    from davit_deploy.images import list_images, read_image
    from davit_deploy.model import onnx_session
    from mmdavit.export.quantize import QuantizeError, quantize
    fp32 = DeployedModel(deployed['cls'])
    xs = [fp32.preprocess(read_image(p))[0] for p in list_images(images['cls'])]
    src, dst = os.path.join(deployed['cls'], folder.MODEL_FILE), str(work / 'static.onnx')
    with pytest.raises(QuantizeError) as e:
        quantize(src, dst, 'static', [])
    assert e.value.problem == QuantizeError.NO_DATA and not os.path.exists(dst)
    settings = quantize(src, dst, 'static', [dict(input=x) for x in xs])
    assert settings['method'] == 'static' and settings['format'] == 'QDQ' and settings['calibration_batches'] == 6
    session = onnx_session(dst)
    for x in xs:
        ref, got = fp32.run(x)['logits'], session.run(None, {'input': x})[0]
        assert np.abs(got - ref).max() <= 0.05 * max(1.0, np.abs(ref).max()) and got.argmax() == ref.argmax()


def test_int8_refusals_one_line_nothing_written(ckpts, work):
    import _cli as ru
    out = str(work / 'never_int8')
    with pytest.raises(ru.UserError, match='--int8 needs --opset 13 or newer'):
        tool('deploy', CONFIGS['cls'], ckpts['cls'], '--out', out, '--int8', '--opset', 12)
    with pytest.raises(ru.UserError, match='--int8 quantises graphs of the TorchScript exporter'):
        tool('deploy', CONFIGS['cls'], ckpts['cls'], '--out', out, '--int8', 'static', '--exporter', 'dynamo')
    assert not os.path.exists(out) and not glob.glob(out + '.tmp-*')
    r = python_tool('tools/deploy.py', CONFIGS['cls'], ckpts['cls'], '--out', out, '--int8', 'int4')
    assert r.returncode == 2 and "invalid choice: 'int4'" in r.stderr and not os.path.exists(out)

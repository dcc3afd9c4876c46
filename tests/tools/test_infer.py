"""tools/infer.py: each task on a toy checkpoint, checkpoint formats, class names, and bad input.

Most cases call the tool's main() in this process (one import of mmdet/mmseg/mmpretrain for all of them); one runs
it as a subprocess for the exit code and the one-line message. The checkpoints are freshly built toy models (random
weights): what is checked is the plumbing (weights loaded, names, files), not prediction quality.
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import build_from_config, python_tool, toy_data

CONFIGS = {
    'det': 'configs/toy/mask-rcnn_davit-t_toy-coco.py',
    'seg': 'configs/toy/upernet_davit-t_toy-ade.py',
    'cls': 'configs/toy/davit-t_toy-imagefolder.py',
}
CLASSES = {
    'det': ['circle', 'square', 'triangle'],
    'seg': ['background', 'circle', 'square', 'triangle'],
    'cls': ['circle', 'square', 'triangle'],
}


def val_image(task):
    return {'det': os.path.join(toy_data('coco'), 'val2017', '000001.jpg'),
            'seg': os.path.join(toy_data('ade'), 'images', 'validation', 'ADE_toy_validation_000001.jpg'),
            'cls': os.path.join(toy_data('imagenet'), 'val', 'triangle', '00001.jpg')}[task]


@pytest.fixture(scope='module')
def models():
    """One freshly built model per task (seeded), built once."""
    torch.manual_seed(0)
    return {task: build_from_config(cfg)[1].eval() for task, cfg in CONFIGS.items()}


@pytest.fixture(scope='module')
def ckpts(models, tmp_path_factory):
    """mmengine-style checkpoints of those models, without dataset_meta (names must come from the config)."""
    d = tmp_path_factory.mktemp('ckpts')
    out = {}
    for task, model in models.items():
        out[task] = str(d / f'{task}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 1}}, out[task])
    return out


def infer(*args):
    import infer as tool  # tools/ is on sys.path (conftest)
    return tool.main([str(a) for a in args])


def read_result(out):
    with open(os.path.join(out, 'predictions.json')) as f:
        return json.load(f)


def rle_shape(rle):
    from pycocotools import mask as mask_utils
    return mask_utils.decode(dict(size=rle['size'], counts=rle['counts'].encode())).shape


def check_picture(out, entry, image):
    import mmcv
    pic = mmcv.imread(os.path.join(out, entry['vis']), channel_order='rgb')
    src = mmcv.imread(image, channel_order='rgb')
    # small images are drawn enlarged by a whole factor so that labels stay legible
    k = pic.shape[0] // src.shape[0]
    assert min(pic.shape[:2]) >= 512 and pic.shape[:2] == (src.shape[0] * k, src.shape[1] * k)
    plain = mmcv.imrescale(src, k, interpolation='nearest')
    assert np.abs(pic.astype(int) - plain.astype(int)).mean() > 1, 'nothing was drawn on the picture'


def test_detection_folder(ckpts, tmp_path):
    """A folder: every image, in name order; a name two images share keeps its extension; other files ignored."""
    import mmcv
    src = tmp_path / 'images'
    src.mkdir()
    shutil.copy(val_image('det'), src / 'a.jpg')
    mmcv.imwrite(mmcv.imread(val_image('det')), str(src / 'a.png'))
    (src / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    # threshold 0: an untrained model's boxes score low, and the JSON must hold some to check
    assert infer(CONFIGS['det'], ckpts['det'], src, '--out', out, '--score-thr', '0') == 0
    res = read_result(out)
    assert res['task'] == 'mmdet' and res['classes'] == CLASSES['det'] and res['score_thr'] == 0
    assert [e['image'] for e in res['images']] == [str(src / 'a.jpg'), str(src / 'a.png')]
    assert [e['vis'] for e in res['images']] == ['vis/a.jpg.png', 'vis/a.png.png']
    assert sorted(os.listdir(out / 'vis')) == ['a.jpg.png', 'a.png.png']
    for entry in res['images']:
        check_picture(out, entry, entry['image'])
        assert entry['instances'], 'no instances at threshold 0'
        for d in entry['instances']:
            assert d['class'] == CLASSES['det'][d['label']] and 0 <= d['score'] <= 1
            x0, y0, x1, y1 = d['bbox_xyxy']
            assert 0 <= x0 <= x1 <= 128 and 0 <= y0 <= y1 <= 128
            assert rle_shape(d['mask_rle']) == (128, 128)
    # the two files hold the same picture (PNG lossless from the decoded JPEG): the same predictions
    assert res['images'][0]['instances'] == res['images'][1]['instances']


def test_detection_score_threshold_filters(ckpts, tmp_path):
    scores = {}
    for thr in ('0', '0.5'):
        infer(CONFIGS['det'], ckpts['det'], val_image('det'), '--out', tmp_path / thr, '--score-thr', thr)
        scores[thr] = [d['score'] for d in read_result(tmp_path / thr)['images'][0]['instances']]
    assert all(s >= 0.5 for s in scores['0.5'])
    assert sorted(scores['0.5']) == sorted(s for s in scores['0'] if s >= 0.5)


def test_segmentation(ckpts, tmp_path):
    out = tmp_path / 'out'
    assert infer(CONFIGS['seg'], ckpts['seg'], val_image('seg'), '--out', out) == 0
    res = read_result(out)
    assert res['task'] == 'mmseg' and res['classes'] == CLASSES['seg']
    (entry,) = res['images']
    check_picture(out, entry, val_image('seg'))
    segs = entry['segments']
    assert sum(d['pixels'] for d in segs) == 128 * 128 and abs(sum(d['fraction'] for d in segs) - 1) < 1e-3
    assert all(d['class'] == CLASSES['seg'][d['label']] and rle_shape(d['mask_rle']) == (128, 128) for d in segs)


def test_classification_top5(ckpts, tmp_path):
    out = tmp_path / 'out'
    assert infer(CONFIGS['cls'], ckpts['cls'], val_image('cls'), '--out', out) == 0
    res = read_result(out)
    assert res['task'] == 'mmpretrain' and res['classes'] == CLASSES['cls']
    (entry,) = res['images']
    check_picture(out, entry, val_image('cls'))
    top = entry['top5']
    assert len(top) == 3  # the toy set has 3 classes: all of them, best first
    assert [d['score'] for d in top] == sorted((d['score'] for d in top), reverse=True)
    assert abs(sum(d['score'] for d in top) - 1) < 1e-3 and {d['class'] for d in top} == set(CLASSES['cls'])


@pytest.mark.parametrize('task', ['det', 'seg', 'cls'])
def test_class_names_from_checkpoint_meta(task, models, tmp_path):
    """Names a checkpoint carries (tools/train.py writes dataset_meta) win over the config's, also without colours."""
    ckpt = tmp_path / 'named.pth'
    names = ['disc', 'box', 'wedge'] if task != 'seg' else ['ground', 'disc', 'box', 'wedge']
    torch.save({'state_dict': models[task].state_dict(), 'meta': {'dataset_meta': {'classes': tuple(names)}}}, ckpt)
    assert infer(CONFIGS[task], ckpt, val_image(task), '--out', tmp_path / 'out', '--score-thr', '0') == 0
    res = read_result(tmp_path / 'out')
    (entry,) = res['images']
    found = {d['class'] for d in entry.get('instances', entry.get('segments', entry.get('top5')))}
    assert res['classes'] == names and found and found <= set(names)


# Checkpoint layouts: name -> (task, function of the model returning the object to torch.save). Each must give the
# same predictions as the model's own weights. Foreign DaViT layouts (official, timm, mmpretrain) go here too.
CHECKPOINT_FORMATS = {
    'mmengine': ('cls', lambda m: {'state_dict': m.state_dict(), 'meta': {}}),
    'bare state dict': ('cls', lambda m: m.state_dict()),
    'DDP prefixes': ('cls', lambda m: {'state_dict': {'module.' + k: v for k, v in m.state_dict().items()}}),
    'detector, bare state dict': ('det', lambda m: m.state_dict()),
}


@pytest.fixture(scope='module')
def reference(models, ckpts, tmp_path_factory):
    """Each task's predictions with its checkpoint in mmengine's own layout, computed once per task."""
    cache = {}

    def get(task):
        if task not in cache:
            out = tmp_path_factory.mktemp(f'ref_{task}')
            infer(CONFIGS[task], ckpts[task], val_image(task), '--out', out, '--score-thr', '0')
            cache[task] = read_result(out)['images'][0]
        return cache[task]
    return get


@pytest.mark.parametrize('fmt', sorted(CHECKPOINT_FORMATS))
def test_checkpoint_formats_load_the_same_weights(fmt, models, reference, tmp_path):
    task, make = CHECKPOINT_FORMATS[fmt]
    ckpt = tmp_path / 'ckpt.pth'
    torch.save(make(models[task]), ckpt)
    infer(CONFIGS[task], ckpt, val_image(task), '--out', tmp_path / 'out', '--score-thr', '0')
    got, ref = read_result(tmp_path / 'out')['images'][0], reference(task)
    key = {'det': 'instances', 'seg': 'segments', 'cls': 'top5'}[task]
    assert got[key] == ref[key]


def _bad_cases(tmp, ckpts, models):
    """name -> (arguments, part of the expected message)."""
    good_img = val_image('det')
    (tmp / 'empty').mkdir()
    (tmp / 'notimg.jpg').write_text('plain text, not a JPEG')
    mixed = tmp / 'mixed'
    mixed.mkdir()
    shutil.copy(good_img, mixed / 'good.jpg')
    (mixed / 'broken.png').write_bytes(open(good_img, 'rb').read()[:40])  # a truncated file
    (tmp / 'garbage.pth').write_bytes(os.urandom(2048))
    torch.save({'state_dict': {'conv1.weight': torch.zeros(8, 3, 7, 7), 'fc.weight': torch.zeros(10, 8)}},
               tmp / 'resnet.pth')
    # the same detector for 5 classes: a whole model of another config
    _, other = build_from_config(CONFIGS['det'], **{'model.roi_head.bbox_head.num_classes': 5,
                                                    'model.roi_head.mask_head.num_classes': 5})
    torch.save({'state_dict': other.state_dict()}, tmp / 'det5.pth')
    det, ck = CONFIGS['det'], ckpts['det']
    return {
        'missing config': (['configs/toy/nope.py', ck, good_img], 'config file not found'),
        'missing image': ([det, ck, tmp / 'nope.jpg'], 'image or folder not found'),
        'folder without images': ([det, ck, tmp / 'empty'], 'no images'),
        'undecodable image': ([det, ck, tmp / 'notimg.jpg'], 'cannot decode image'),
        'one broken image in a folder': ([det, ck, mixed], 'broken.png'),
        'missing checkpoint': ([det, tmp / 'nope.pth', good_img], 'checkpoint file not found'),
        'unreadable checkpoint': ([det, tmp / 'garbage.pth', good_img], 'is incomplete or not a checkpoint'),
        'not a DaViT checkpoint': ([det, tmp / 'resnet.pth', good_img], 'not a DaViT checkpoint'),
        'another task\'s checkpoint': ([det, ckpts['seg'], good_img], 'another model'),
        'another config\'s checkpoint': ([det, tmp / 'det5.pth', good_img], 'roi_head.bbox_head.fc_cls.weight'),
    }


def test_bad_inputs_one_error_and_nothing_written(ckpts, models, tmp_path):
    import _cli
    cases = _bad_cases(tmp_path, ckpts, models)
    for name, (args, expected) in cases.items():
        out = tmp_path / 'out'
        with pytest.raises(_cli.INPUT_ERRORS) as err:
            infer(*args, '--out', out)
        msg = str(err.value)
        assert expected in msg and '\n' not in msg, (name, msg)
        assert not out.exists(), name


def test_bad_input_exit_code_and_one_line(ckpts, tmp_path):
    out = tmp_path / 'out'
    (tmp_path / 'x.jpg').write_text('not an image')
    r = python_tool('tools/infer.py', CONFIGS['cls'], ckpts['cls'], str(tmp_path / 'x.jpg'), '--out', str(out))
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'cannot decode image' in errors[0] and str(tmp_path / 'x.jpg') in errors[0]
    assert not out.exists()


@pytest.mark.parametrize('content,expected', [
    (None, 'is no deployed model (no deploy.json): make one with tools/deploy.py'),
    ('{"format": "mmdavit-deploy/2", "task": "mmseg"}', 'mmdavit-deploy/2; this runtime reads mmdavit-deploy/1'),
    ('{"format": "something else"}', 'is not a mmdavit-deploy/1 file'),
])
def test_a_folder_the_runtime_cannot_run_one_line_exit_2(tmp_path, content, expected):
    """A folder in CONFIG's place goes to the deployed path, which words the runtime's typed refusal with advice."""
    deployed = tmp_path / 'deployed'
    deployed.mkdir()
    if content:
        (deployed / 'deploy.json').write_text(content)
    out = tmp_path / 'out'
    r = python_tool('tools/infer.py', str(deployed), val_image('cls'), '--out', str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert r.stderr.startswith('error: ') and expected in r.stderr
    assert not out.exists()

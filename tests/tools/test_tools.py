"""tools/get_flops.py, tools/convert_checkpoint.py and tools/benchmark.py on real configs and files."""
import json
import os
import re

import pytest
import torch

from helpers import ROOT, python_tool


@pytest.mark.parametrize('arch,params,flops', [('tiny', 28.3, 4.5), ('small', 49.7, 8.8), ('base', 87.9, 15.5)])
def test_get_flops_classification_matches_paper(arch, params, flops):
    r = python_tool('tools/get_flops.py', f'configs/mmcls/davit-{arch}_8xb128_in1k.py')
    assert r.returncode == 0, r.stderr[-2000:]
    p = float(re.search(r'Params: ([0-9.]+)M', r.stdout).group(1))
    f = float(re.search(r'FLOPs: ([0-9.]+)G', r.stdout).group(1))
    assert params <= p < params + 0.1 and round(f, 1) == flops, r.stdout


def test_get_flops_dense_configs_count_backbone_and_heads():
    """A whole detector/segmentor at 128x128: the backbone as hand-counted (test_flops.py proves the counter exact on
    DaViT) plus its neck and heads counted on their own; attention is in the count. UPerNet is exactly backbone +
    decode head (the auxiliary head runs in training only); Mask R-CNN is at least backbone + FPN (its RPN and RoI
    heads come on top)."""
    from davit_backbone.flops import count_macs
    from helpers import analytic_macs, build_from_config
    backbone = analytic_macs('tiny', 128, 128)
    for cfg in ('configs/toy/mask-rcnn_davit-t_toy-coco.py', 'configs/toy/upernet_davit-t_toy-ade.py'):
        r = python_tool('tools/get_flops.py', cfg, '--shape', '128', '--per-op')
        assert r.returncode == 0, r.stderr[-2000:]
        total = float(re.search(r'FLOPs: ([0-9.]+)G', r.stdout).group(1))
        assert '_scaled_dot_product_flash_attention_for_cpu' in r.stdout
        model = build_from_config(cfg)[1].eval()
        feats = model.backbone(torch.randn(1, 3, 128, 128))
        if hasattr(model, 'neck'):
            parts = backbone + count_macs(model.neck, feats)[0]
            assert total >= round(parts / 1e9, 2) + 0.01, (cfg, parts, r.stdout)
        else:
            parts = backbone + count_macs(model.decode_head, feats)[0]  # the auxiliary head only trains
            assert abs(total - parts / 1e9) <= 0.005, (cfg, parts, r.stdout)


def test_get_flops_query_based_heads():
    """DINO and Mask2Former read the image's shape from data samples even in tensor mode: the tool gives them one, and
    counts backbone, neck, transformer and every decoder layer's predictions (more than backbone and neck alone)."""
    from davit_backbone.flops import count_macs
    from helpers import analytic_macs, build_from_config
    for cfg in ('configs/toy/dino_davit-t_toy-coco.py', 'configs/toy/mask2former_davit-t_toy-ade.py'):
        r = python_tool('tools/get_flops.py', cfg, '--shape', '128')
        assert r.returncode == 0, r.stderr[-2000:]
        total = float(re.search(r'FLOPs: ([0-9.]+)G', r.stdout).group(1))
        model = build_from_config(cfg)[1].eval()
        feats = model.backbone(torch.randn(1, 3, 128, 128))
        bottom = analytic_macs('tiny', 128, 128) + (count_macs(model.neck, feats)[0] if 'dino' in cfg else 0)
        assert total >= round(bottom / 1e9, 2) + 0.01, (cfg, bottom, r.stdout)


def test_convert_checkpoint_tool(tmp_path, seed):
    timm = pytest.importorskip('timm')
    from davit_backbone import DaViT
    src = tmp_path / 'timm.pth'
    ref = timm.create_model('davit_tiny')
    torch.save(ref.state_dict(), src)
    r = python_tool('tools/convert_checkpoint.py', str(src), str(tmp_path / 'ours.pth'))
    assert r.returncode == 0 and '(timm,' in r.stdout, r.stderr
    sd = torch.load(tmp_path / 'ours.pth')['state_dict']
    assert not any(re.search(r'blocks\.\d+\.[01]\.', k) for k in sd) and any('spatial_block' in k for k in sd)
    DaViT('tiny', num_classes=1000).load_state_dict(sd, strict=True)
    r = python_tool('tools/convert_checkpoint.py', str(tmp_path / 'ours.pth'), str(tmp_path / 'off.pth'),
                    '--to', 'official')
    assert r.returncode == 0 and any(k.startswith('main_blocks.') for k in torch.load(tmp_path / 'off.pth')['state_dict'])
    bad = tmp_path / 'bad.pth'
    torch.save({'fc.weight': torch.zeros(1)}, bad)
    r = python_tool('tools/convert_checkpoint.py', str(bad), str(tmp_path / 'never.pth'))
    assert r.returncode == 2 and 'not a DaViT checkpoint' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'never.pth').exists() and not (tmp_path / 'never.pth.tmp').exists()


def _benchmark(tmp_path, *args, fresh=False):
    out = tmp_path / 'bench.jsonl'
    r = python_tool('tools/benchmark.py', '--warmup', '1', '--iters', '1', '--rounds', '1', '--out', str(out), *args,
                    fresh=fresh)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text().splitlines()[-1])
    assert json.loads(r.stdout.strip().splitlines()[-1]) == result
    _table_says_what_json_says(r.stdout, result)
    return result


def _table_says_what_json_says(stdout, result):
    """Every row of the printed table (images/s, ours relative to the row, peak MiB) and the ratio line against the
    JSON line printed after it: a reader of either sees the same measurement."""
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r'^(ours|plain|timm|mmpretrain|swin|onnxruntime)\s+([0-9.]+)\s+([0-9.]+)x\s+([0-9.]+|n/a)\s+([0-9]+|n/a)$',
        stdout, re.M)}
    models = [k for k in ('ours', 'plain', 'timm', 'mmpretrain', 'swin', 'onnxruntime') if k in result]
    assert sorted(rows) == sorted(models), stdout
    for name, (ips, rel, mem, faults) in rows.items():
        assert float(ips) == pytest.approx(result[name], abs=0.006)
        assert float(rel) == pytest.approx(result['ours'] / result[name], abs=6e-4)
        expected_mem = result['peak_mem_mib'][name]
        assert mem == 'n/a' if expected_mem is None else float(mem) == pytest.approx(expected_mem, abs=0.06)
        assert faults == str(result['page_faults_per_step'][name])  # a count on Linux, where the suite runs
    assert f"allocator: {result['settings']['allocator']}" in stdout
    ratio = re.search(r'^ratio \(ours / best reference\): ([0-9.]+)$', stdout, re.M)
    assert (ratio and float(ratio.group(1))) == result['ratio']  # no line without references (--ours-only)
    if 'fast_ratio' in result:
        line = re.search(r'^fast_ratio \(ours / plain\): ([0-9.]+)$', stdout, re.M)
        assert float(line.group(1)) == result['fast_ratio']
    s = result['settings']  # where it ran, in the table's header too
    assert f"CPU {s['cpu']} ({s['capability']}), fast paths: {', '.join(s['fast_paths']) or 'none'}" in stdout
    if 'onnx_ratio' in result:
        line = re.search(r'^onnx_ratio \(onnxruntime / ours eager\): ([0-9.]+)$', stdout, re.M)
        assert float(line.group(1)) == result['onnx_ratio']


def test_benchmark_classifier_and_dense_training_with_cp(tmp_path):
    """Smoke run of the benchmark's JSON contract on tiny inputs (speed targets are measured, not asserted)."""
    pytest.importorskip('timm')
    r = _benchmark(tmp_path, '--size', '64', '--batch', '2')
    assert {'ours', 'timm', 'ratio', 'peak_mem_mib', 'gflops_per_image', 'settings'} <= set(r)
    assert r['ratio'] == pytest.approx(r['ours'] / max(v for k, v in r.items() if k in ('timm', 'mmpretrain')), rel=1e-2)
    assert r['settings']['size'] == [64, 64] and r['gflops_per_image'] > 0
    # where it ran and what the fast paths gave: plain (every path off) interleaved with the rest, not a reference
    from davit_backbone import kernels
    s = r['settings']
    assert s['capability'] == torch.backends.cpu.get_cpu_capability() and s['cpu'] == kernels.cpu_model()
    assert s['threads'] >= 1 and s['torch'] == torch.__version__
    if s['fast_paths_setting'] == os.environ.get(kernels.ENV_VAR, 'auto') == 'auto':
        assert set(s['fast_paths']) == kernels.default_paths()
    assert r['plain'] > 0 and r['fast_ratio'] == pytest.approx(r['ours'] / r['plain'], rel=1e-2)
    r = _benchmark(tmp_path, '--dense', '--mode', 'train', '--with-cp', '--size', '96', '128', '--batch', '1')
    # checkpointing keeps only block inputs: even at this size the step's peak tensor memory drops
    assert r['peak_mem_mib']['ours_without_cp'] > r['peak_mem_mib']['ours'] > 0
    assert r['with_cp_memory_ratio'] < 1.0
    r = _benchmark(tmp_path, '--ours-only', '--size', '64', '--batch', '1')
    assert {k for k in ('ours', 'plain', 'timm', 'mmpretrain') if k in r} == {'ours'} and r['ratio'] is None
    assert r['peak_mem_mib']['ours'] > 0 and r['settings']['ours_only'] is True
    assert r['settings']['allocator'] == 'default'


def test_benchmark_keeps_freed_memory_and_counts_page_faults(tmp_path):
    """At 224x224 DaViT-T's first-stage buffers (1-5 MiB at batch 1) are above glibc's starting mmap threshold: with
    the default malloc of a new process the four models fault in about 10 000 pages a step together (500-6200 each
    here); told to keep freed memory, a few hundred, from the heap's last growth. New interpreters both: how many
    pages glibc faults depends on what the process allocated before."""
    default = _benchmark(tmp_path, '--size', '224', '--batch', '1', '--rounds', '2', fresh=True)
    kept = _benchmark(tmp_path, '--size', '224', '--batch', '1', '--rounds', '2', '--keep-freed-memory', fresh=True)
    assert kept['settings']['allocator'] == 'glibc, freed memory kept'
    faults = {name: r['page_faults_per_step'] for name, r in (('default', default), ('kept', kept))}
    assert 4 * sum(faults['kept'].values()) < sum(faults['default'].values()), faults


def test_benchmark_onnxruntime_beside_eager(tmp_path):
    pytest.importorskip('onnxruntime')
    r = _benchmark(tmp_path, '--onnx', '--dense', '--size', '97', '61', '--batch', '1')
    assert r['onnxruntime'] > 0 and r['peak_mem_mib']['onnxruntime'] is None and r['settings']['onnx'] is True
    assert r['onnx_ratio'] == pytest.approx(r['onnxruntime'] / r['ours'], rel=1e-2)
    refs = [v for k, v in r.items() if k in ('timm', 'mmpretrain')]
    assert r['ratio'] == pytest.approx(r['ours'] / max(refs), rel=1e-2)  # onnxruntime is no reference


def test_benchmark_maskrcnn_mode(tmp_path):
    """Whole detectors, ours also exported whole and run as deployed (--onnx)."""
    pytest.importorskip('mmdet')
    pytest.importorskip('onnxruntime')
    r = _benchmark(tmp_path, '--maskrcnn', '--onnx', '--size', '64', '96')
    assert r['ours'] > 0 and r['swin'] > 0 and r['onnxruntime'] > 0 and r['settings']['maskrcnn'] is True
    assert r['ratio'] == pytest.approx(r['ours'] / r['swin'], rel=1e-2)  # onnxruntime is no reference
    assert r['onnx_ratio'] == pytest.approx(r['onnxruntime'] / r['ours'], rel=1e-2)


def test_benchmark_upernet_mode(tmp_path):
    """Whole segmenters, ours also exported as tools/deploy.py exports it and run in onnxruntime, int8 beside."""
    pytest.importorskip('mmseg')
    pytest.importorskip('onnxruntime')
    r = _benchmark(tmp_path, '--upernet', '--onnx', '--int8', '--size', '64', '96')
    assert r['ours'] > 0 and r['swin'] > 0 and r['onnxruntime'] > 0 and r['onnxruntime_int8'] > 0
    assert r['settings']['upernet'] is True and r['settings']['size'] == [64, 96] and r['settings']['batch'] == 1
    assert r['ratio'] == pytest.approx(r['ours'] / r['swin'], rel=1e-2)  # onnxruntime is no reference
    assert r['int8_ratio'] == pytest.approx(r['onnxruntime_int8'] / r['onnxruntime'], rel=1e-2)


@pytest.mark.parametrize('tool', ['train.py', 'test.py', 'infer.py', 'deploy.py', 'get_flops.py',
                                  'convert_checkpoint.py', 'benchmark.py', 'vis_scheduler.py', 'make_toy_data.py',
                                  'train_memory.py'])
def test_a_tool_without_its_environment_says_which_to_use(tool, tmp_path):
    """A tool started by a Python that cannot import the stack (here: this one without site-packages, as the system
    Python is) says so in one line and which environment to activate, instead of a ModuleNotFoundError traceback."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, '-S', os.path.join(ROOT, 'tools', tool), 'x', 'y'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith('error: ') and 'cannot import' in lines[0] and '/bin/activate' in lines[0], lines[0]
    assert not any(tmp_path.iterdir())


def test_train_memory_of_a_toy_detector(tmp_path):
    """tools/train_memory.py: one whole training step of a config's model measured after a warm-up step; the total is
    the parts' sum, the optimizer's states exist (AdamW: two per weight), and checkpointing holds fewer tensors."""
    out = {}
    for with_cp in (False, True):
        r = python_tool('tools/train_memory.py', 'configs/toy/retinanet_davit-t_toy-coco.py', '--size', '96', '128',
                        '--batch', '2', '--cfg-options', f'model.backbone.with_cp={with_cp}')
        assert r.returncode == 0, r.stderr[-2000:]
        out[with_cp] = json.loads(r.stdout.strip().splitlines()[-1])
    m = out[False]
    assert m['batch'] == 2 and m['size'] == [96, 128] and m['step_peak'] > 0
    assert abs(m['total'] - (m['weights'] + m['optimizer_states'] + m['step_peak'])) < 0.5
    assert 1.9 < m['optimizer_states'] / m['weights'] < 2.1
    assert out[True]['step_peak'] < m['step_peak']
    r = python_tool('tools/train_memory.py', 'configs/toy/retinanet_davit-t_toy-coco.py', '--batch', '0')
    assert r.returncode == 2 and r.stderr.strip().startswith('error: --batch must be >= 1')

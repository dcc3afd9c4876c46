"""Shared test helpers (imported as ``helpers``; conftest puts tests/ on sys.path)."""
import os
import signal
import subprocess
import sys
import threading
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randomize_norms(model):
    """Random affine params for every norm, so that a test cannot pass because norms are identity at init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name:
                p.normal_(1.0, 0.2) if name.endswith('weight') else p.normal_(0.0, 0.2)
    return model


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def expected_out_shapes(arch, height, width):
    """(C, H, W) of each stage's output for an input of height x width: every stride rounds up (padding)."""
    import math
    from davit_backbone import resolve_arch
    h, w, shapes = height, width, []
    for i, d in enumerate(resolve_arch(arch)['embed_dims']):
        h, w = (math.ceil(h / 4), math.ceil(w / 4)) if i == 0 else (math.ceil(h / 2), math.ceil(w / 2))
        shapes.append((d, h, w))
    return tuple(shapes)


def dense_davit(arch='tiny', **kwargs):
    """The plain model as the detection backbone: no head, a LayerNorm-ed map per stage (``forward_dense``)."""
    from davit_backbone import DaViT
    return DaViT(arch, with_head=False, out_indices=(0, 1, 2, 3), **kwargs)


def run_tool(*args, env=None, timeout=900, cwd=ROOT):
    """Runs a command from the repo root with this interpreter's environment; returns CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    full_env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    return subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def toy_data(kind):
    """Generates (once per machine) the toy set of that kind under data/ and returns its path. A lock file makes
    the test processes of a parallel run (pytest -n) wait for the one that writes it."""
    import fcntl
    path = os.path.join(ROOT, 'data', f'toy_{kind}')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            r = run_tool(sys.executable, 'tools/make_toy_data.py', kind, path)
            assert r.returncode == 0, r.stderr
    return path


def config_files(folder):
    import glob
    return sorted(glob.glob(os.path.join(ROOT, 'configs', folder, '*.py')))


def build_from_config(path, **overrides):
    """Builds the model of a config in its own scope, ``pretrained`` mapped as tools/train.py maps it."""
    from mmengine.config import Config

    from mmdavit.checkpoints.reader import build_model, map_pretrained
    cfg = Config.fromfile(path if os.path.isabs(path) else os.path.join(ROOT, path))
    if overrides:
        cfg.merge_from_dict(overrides)
    map_pretrained(cfg.model)
    return cfg, build_model(cfg)


# DaViT-H (huge_fl: 360M parameters) takes about 15 s to build and 25 s for one step at 96x128 on 2 cores, so its
# configs are built on the meta device instead: the backbone, with checkpointing, and the neck run forward and
# backward on shapes alone, which checks every module's arguments and the channels between them; the heads' inputs
# are checked by the config tests' test_florence_large_is_the_base_recipe_on_the_wider_tower, the loss path on the
# smaller archs
META_ARCHS = ('huge', 'huge_fl', 'giant')


def built_on_meta(path, **overrides):
    import torch
    from mmengine.config import Config
    if Config.fromfile(path).model.backbone.get('arch') not in META_ARCHS:
        return False
    with torch.device('meta'):
        cfg, model = build_from_config(path, **overrides)
        model.train()
        feats = model.extract_feat(torch.randn(2, 3, 96, 128))
        sum(f.sum() for f in feats).backward()
    assert cfg.model.backbone.type == 'DaViT' and model.backbone.stem.conv.weight.grad is not None
    return True


def scalars(work_dir):
    """The training log's scalar records (mmengine's vis_data/scalars.json), oldest first."""
    import glob
    import json
    files = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


# environment variables that a library reads when it loads or the process starts, not when a tool runs: a run that
# sets one differently from the tool server's start gets a fresh interpreter
FRESH_ENV = ('PYTHON', 'LD_', 'MALLOC_', 'MKL_', 'KMP_', 'GOMP_', 'OMP_', 'CUDA_', 'TORCH_', 'DAVIT_VENV')
_server = None
_server_env = None
_server_buffer = b''
_server_lock = threading.Lock()


def _needs_fresh_interpreter(env):
    def fresh(k):
        return k.startswith(FRESH_ENV) and k not in ('OMP_NUM_THREADS', 'PYTHONUNBUFFERED')
    started = _server_env or env  # no server yet: it will start with this environment
    return any(env.get(k) != started.get(k) for k in set(env) | set(started) if fresh(k))


def _tool_server(env):
    global _server, _server_env, _server_buffer
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'tool_server.py')], cwd=ROOT,
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        _server_env, _server_buffer = env, b''
        assert _read_line(_server, time.monotonic() + 300) == 'ready', 'tests/tool_server.py did not start'
    return _server


def _read_line(server, deadline):
    """The server's next line, or None at the deadline (the pipe is read unbuffered: select sees all there is)."""
    import select
    global _server_buffer
    fd = server.stdout.fileno()
    while b'\n' not in _server_buffer:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError('tests/tool_server.py ended')
        _server_buffer += chunk
    line, _server_buffer = _server_buffer.split(b'\n', 1)
    return line.decode()


def python_tool(*args, env=None, timeout=900, cwd=ROOT, fresh=False):
    """``python TOOL ARGS`` from the repo root, as ``run_tool`` runs it, in a child forked from a warm interpreter
    (tests/tool_server.py) that has the libraries imported: the same process boundary without 5-7 s of imports.
    ``fresh=True`` (a test of what a new process starts with), interpreter options (``-c``, ``-m``),
    ``DAVIT_TEST_FORK=0``, or an environment that libraries read at start-up run a fresh interpreter instead."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    full_env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    if (fresh or str(args[0]).startswith('-') or os.environ.get('DAVIT_TEST_FORK', '1') == '0'
            or _needs_fresh_interpreter(full_env)):
        return run_tool(sys.executable, *args, env=env, timeout=timeout, cwd=cwd)
    import json
    import tempfile
    with _server_lock, tempfile.TemporaryDirectory(prefix='tool-run-') as tmp:
        server = _tool_server(full_env)
        out, err = os.path.join(tmp, 'out'), os.path.join(tmp, 'err')
        server.stdin.write(json.dumps(dict(argv=list(map(str, args)), cwd=str(cwd), env=full_env, out=out,
                                           err=err)).encode() + b'\n')
        deadline = time.monotonic() + timeout
        pid = int(_read_line(server, deadline).split()[1])
        line = _read_line(server, deadline)
        timed_out = line is None
        if timed_out:
            os.kill(pid, signal.SIGKILL)
            line = _read_line(server, time.monotonic() + 60)
        code = os.waitstatus_to_exitcode(int(line.split()[1]))
        with open(out, errors='replace') as f_out, open(err, errors='replace') as f_err:
            stdout, stderr = f_out.read(), f_err.read()
    cmd = [sys.executable, *map(str, args)]
    if timed_out:
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(cmd, code, stdout, stderr)


def detections_of(predictions):
    """A detection predictions.json (tools/infer.py, either path) as {image name: boxes, scores, labels (, masks)}
    in the form davit_deploy.detection.match takes."""
    import numpy as np
    out = {}
    for im in predictions['images']:
        inst = im['instances']
        d = dict(boxes=np.array([i['bbox_xyxy'] for i in inst], np.float32).reshape(-1, 4),
                 scores=np.array([i['score'] for i in inst], np.float32),
                 labels=np.array([i['label'] for i in inst], np.int64))
        if inst and 'mask_rle' in inst[0]:
            from pycocotools import mask as mask_utils
            d['masks'] = np.stack([
                mask_utils.decode(dict(size=i['mask_rle']['size'], counts=i['mask_rle']['counts'].encode()))
                .astype(bool) for i in inst])
        out[os.path.basename(im['image'])] = d
    return out


# ------------------------------------------------------------------------- checkpoints in every known layout
def to_timm(sd):
    import re
    return {re.sub(r'\.blocks\.(\d+)\.(spatial|channel)_block\.',
                   lambda m: f'.blocks.{m.group(1)}.{0 if m.group(2) == "spatial" else 1}.', k): v
            for k, v in sd.items()}


def to_mmpretrain(sd):
    """Our keys -> mmpretrain's DaViT (the downsample entering stage i+1 stored at the end of stage i; the
    classifier's norm as norm3; the Linear in the task head), as a whole ImageClassifier checkpoint."""
    import re
    out = {}
    for k, v in sd.items():
        k = k.replace('stem.conv.', 'patch_embed.projection.').replace('stem.norm.', 'patch_embed.norm.')
        m = re.match(r'stages\.(\d+)\.downsample\.(conv|norm)\.(.*)', k)
        if m:
            k = f'stages.{int(m.group(1)) - 1}.downsample.{"projection" if m.group(2) == "conv" else "norm"}.{m.group(3)}'
        k = k.replace('.attn.qkv.', '.attn.w_msa.qkv.').replace('.attn.proj.', '.attn.w_msa.proj.')
        k = k.replace('.mlp.fc1.', '.ffn.layers.0.0.').replace('.mlp.fc2.', '.ffn.layers.1.')
        if k.startswith('head.fc.'):
            out[k] = v
        else:
            out['backbone.' + k.replace('head.norm.', 'norm3.')] = v
    return out


def to_florence2(sd):
    """Our keys -> the Hugging Face Florence-2 layout: timm's ``_convert_florence2`` rules, inverted."""
    import re
    out = {}
    for k, v in sd.items():
        if k.startswith(('head.', 'norm')):
            continue  # the released tower has neither
        k = k.replace('stem.', 'convs.0.')
        k = re.sub(r'^stages\.(\d+)\.downsample\.conv\.', r'convs.\1.proj.', k)
        k = re.sub(r'^stages\.(\d+)\.downsample\.', r'convs.\1.', k)
        k = k.replace('convs.0.conv.', 'convs.0.proj.')
        k = re.sub(r'^stages\.(\d+)\.blocks\.', r'blocks.\1.', k)
        attn = 'window_attn' if '.spatial_block.' in k else 'channel_attn'
        for ours, theirs in (('.attn.', f'.{attn}.fn.'), ('.norm1.', f'.{attn}.norm.'), ('.norm2.', '.ffn.norm.'),
                             ('.mlp.', '.ffn.fn.net.'), ('.cpe1.proj.', '.conv1.fn.dw.'),
                             ('.cpe2.proj.', '.conv2.fn.dw.')):
            k = k.replace(ours, theirs)
        out['vision_tower.' + k] = v
    return out


def in_layout(sd, fmt):
    """Our state dict (a classifier's) written in another release's layout: 'official', 'timm', 'mmpretrain'
    (a whole ImageClassifier checkpoint) or 'ours'."""
    from davit_backbone import to_official
    return {'official': to_official, 'timm': to_timm, 'mmpretrain': to_mmpretrain, 'ours': dict}[fmt](sd)


def task_tool(repo, name):
    """A task repo's own script as its wheel ships it, e.g. task_tool('mmdet', 'train.py')."""
    import importlib
    return os.path.join(os.path.dirname(importlib.import_module(repo).__file__), '.mim', 'tools', name)


def task_config(repo, name):
    """A task repo's own config as its wheel ships it (what ``repo::name`` in a _base_ refers to)."""
    import importlib
    return os.path.join(os.path.dirname(importlib.import_module(repo).__file__), '.mim', 'configs', name)


def without_scope(value):
    """A config value without the ``_scope_`` keys that inheriting across repos (``'mmdet::...'``, ``'mmseg::...'``)
    adds to it."""
    if isinstance(value, dict):
        return {k: without_scope(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [without_scope(v) for v in value]
    return value


def saved_tensors(path):
    """The state dict of a checkpoint file written by a Runner."""
    from mmdavit import load_checkpoint_file
    return load_checkpoint_file(str(path))['state_dict']


# ------------------------------------------------------------------------- what a config's schedule really does
def weight_decay_of(optimizer, model):
    """{parameter name: the weight decay the optimizer applies to it}."""
    decay = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    return {n: decay[id(p)] for n, p in model.named_parameters()}


def drop_path_rates(model):
    """The stochastic-depth probability of every residual branch of a task model's backbone, in depth order."""
    return [getattr(m, 'drop_prob', 0.) for n, m in model.backbone.named_modules() if n.endswith('.drop_path')]


def killable_classifier_config(folder, name, epochs, val_interval):
    """Writes FOLDER/NAME: a small seeded DaViT classifier (16-wide stages, drop path on) on 8 images of the toy
    ImageFolder set, a checkpoint every epoch, with tests/mmdavit/training/killpoints.py's KillPoint hook (put that
    folder on PYTHONPATH); what the crash-safety and the multi-node tests train. Returns the path."""
    toy_data('imagenet')
    path = os.path.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(f'''
_base_ = {os.path.join(ROOT, 'configs', 'toy', 'davit-t_toy-imagefolder.py')!r}
custom_imports = dict(imports=['mmcls_davit', 'killpoints'], allow_failed_imports=False)
custom_hooks = [dict(type='KillPoint')]
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]),
                           drop_path_rate=0.2),
             head=dict(in_channels=128))
train_dataloader = dict(batch_size=4, dataset=dict(indices=[0, 1, 2, 24, 25, 26, 48, 49]))
val_dataloader = dict(batch_size=4)
test_dataloader = val_dataloader
train_cfg = dict(max_epochs={epochs}, val_interval={val_interval})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
''')
    return path


def florence2_file(tmp_path, arch):
    """A checkpoint in the Florence-2 release's layout (the whole VLM: vision tower plus language-model tensors) of
    a random DaViT whose norms are random too; returns (that DaViT, the file's path)."""
    import torch

    from davit_backbone import DaViT
    torch.manual_seed(0)
    ref = randomize_norms(DaViT(arch, num_classes=0))
    sd = dict(to_florence2(ref.state_dict()), **{'language_model.lm_head.weight': torch.randn(4, 4),
                                                   'image_projection': torch.randn(256, 8)})
    path = tmp_path / 'pytorch_model.bin'
    torch.save(sd, path)
    return ref, str(path)


def check_training_from_florence2_file(config, options, tmp_path):
    """The Florence-2 options (windows of 12, 3x3 downsampling, channel attention v2) through the adapter: a toy run
    of ``config`` starts from a Florence-2 file given as the backbone's ``pretrained``, and trains."""
    cfg, model = build_from_config(config)
    bb = model.backbone
    assert bb.window_size == 12 and bb.down_kernel_size == 3 and bb.channel_attn_v2
    assert bb.stages[0].blocks[0].channel_block.attn.v2
    ref, path = florence2_file(tmp_path, cfg.model.backbone.arch)
    wd = str(tmp_path / 'wd')
    r = python_tool('tools/train.py', config, '--work-dir', wd, '--cfg-options',
                    f'model.backbone.pretrained={path}', *options)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert 'florence2-format DaViT checkpoint' in log and 'newly initialised' in log, log[-4000:]
    losses = [s['loss'] for s in scalars(wd) if 'loss' in s]
    assert losses and all(l == l and l < 1e4 for l in losses), losses  # finite: the train steps ran
    # the run started from the file: the trained stem moved from it only by a few small AdamW steps
    ckpt = sorted(f for f in os.listdir(wd) if f.endswith('.pth'))
    trained = saved_tensors(os.path.join(wd, ckpt[-1]))
    assert (trained['backbone.stem.conv.weight'] - ref.state_dict()['stem.conv.weight']).abs().max() < 0.05

def analytic_macs(arch, height, width, num_classes=0, window=7, mlp_ratio=4):
    """DaViT's multiply-accumulates written out by hand from the architecture (every conv, Linear and attention
    product, padding included): the reference davit_backbone/flops.py is checked against."""
    import math

    from davit_backbone import resolve_arch
    a = resolve_arch(arch)
    dims, depths, heads = a['embed_dims'], a['depths'], a['num_heads']
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    macs = h * w * dims[0] * 3 * 7 * 7  # stem conv
    for i, (c, depth, nh) in enumerate(zip(dims, depths, heads)):
        if i:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            macs += h * w * c * dims[i - 1] * 2 * 2  # downsample conv
        n = h * w
        hp, wp = math.ceil(h / window) * window, math.ceil(w / window) * window
        per_sub = 2 * n * c * 9 + n * (4 * c * c + 2 * mlp_ratio * c * c)  # two CPEs, qkv + proj, MLP
        spatial = per_sub + (hp * wp - n) * 4 * c * c + 2 * hp * wp * window * window * c  # padded tokens, QK^T, AV
        channel = per_sub + 2 * n * c * (c // nh)  # K^T V and its product with Q^T, per head
        macs += depth * (spatial + channel)
    return macs + dims[-1] * num_classes


# Florence-2 as transformers ships it natively, built from its config (random weights, no download): the toy
# RetinaNet's Florence-2-style backbone (configs/toy/retinanet_davit-fl_toy-coco.py) as a real Florence-2 tower
FLORENCE2_TOY_TOWER = dict(embed_dim=(32, 64, 128, 256), num_heads=(1, 2, 4, 8), num_groups=(1, 2, 4, 8),
                           depths=(1, 1, 1, 1))
FLORENCE2_TOY_ARCH = dict(embed_dims=(32, 64, 128, 256), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=12,
                          down_kernel_size=3, channel_attn_v2=True)
FLORENCE2_TOY_CFG = 'configs/toy/retinanet_davit-fl_toy-coco.py'


def reference(module):
    """A reference kept out of the environment (requirements/reference.txt): tools/setup_env.sh installs it into
    <venv>/reference, which is put on sys.path (last, so that the environment's own packages win) for the tests
    that use it. Missing, it fails the test: the suite must not pass by skipping its references."""
    import importlib
    folder = os.path.join(sys.prefix, 'reference')
    if folder not in sys.path:
        sys.path.append(folder)
        # transformers now importable in this process, as in a user's environment that has it: mmdavit's import
        # checked for it before it was on the path
        from mmdavit.models.mmpretrain_compat import keep_mmpretrain_importable
        keep_mmpretrain_importable()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise AssertionError(f'the test reference {module} is not in {folder}: run make env ({e})') from None


def florence2_whole_model(seed=0):
    """A whole transformers Florence-2 (that tower + a tiny BART + the projector), random weights."""
    import torch
    transformers = reference('transformers')
    BartConfig, Florence2Config = transformers.BartConfig, transformers.Florence2Config
    torch.manual_seed(seed)
    text = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32)
    config = Florence2Config(vision_config=dict(FLORENCE2_TOY_TOWER, projection_dim=16, drop_path_rate=0.),
                             text_config=text)
    return transformers.Florence2ForConditionalGeneration(config).eval()


def florence2_layouts(root):
    """(the tower in our keys, {layout: path}) for every native layout a user may hand over: the whole model, a
    saved ``Florence2Model`` and the bare ``Florence2VisionBackbone``, each as .safetensors and .bin, and
    ``save_pretrained`` folders, one of them sharded (with its index)."""
    import torch
    from safetensors.torch import save_file

    from davit_backbone import convert_state_dict
    model = florence2_whole_model()
    layouts = {'whole': model.state_dict(), 'florence2model': model.model.state_dict(),
               'backbone': model.model.vision_tower.state_dict()}
    assert any(k.startswith('lm_head.') for k in layouts['whole'])
    assert any(k.startswith('multi_modal_projector.') for k in layouts['florence2model'])
    paths = {}
    for name, sd in layouts.items():
        # save_file refuses tensors that share memory (the tied embeddings): a copy each, as save_pretrained writes
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(root / f'{name}.safetensors'))
        torch.save(sd, root / f'{name}.bin')
        paths[f'{name}.safetensors'], paths[f'{name}.bin'] = root / f'{name}.safetensors', root / f'{name}.bin'
    model.save_pretrained(root / 'folder')  # model.safetensors + config.json, as `hf download` leaves it
    model.save_pretrained(root / 'sharded', max_shard_size='100KB')  # shards + model.safetensors.index.json
    assert len(list((root / 'sharded').glob('model-*.safetensors'))) > 1
    paths.update({'folder': root / 'folder', 'sharded folder': root / 'sharded',
                  'shard index': root / 'sharded' / 'model.safetensors.index.json'})
    return convert_state_dict(layouts['backbone']), {k: str(v) for k, v in paths.items()}


def assert_tower(model_sd, tower, prefix=''):
    import torch
    for k, v in tower.items():
        assert torch.equal(model_sd[prefix + k], v), k


def processes_naming(wd, within=20):
    """Processes whose command line names ``wd`` after ``within`` seconds, if any (then killed, not to leave a
    stalled rank behind a failed test)."""
    def find():
        found = {}
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
            except OSError:
                continue
            if str(wd) in cmd and int(pid) != os.getpid():
                found[int(pid)] = cmd
        return found
    deadline = time.time() + within
    while (left := find()) and time.time() < deadline:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left

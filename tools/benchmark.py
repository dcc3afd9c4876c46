#!/usr/bin/env python
"""Speed and memory of our DaViT against timm's and mmpretrain's, in one process, interleaved, after warm-up.

    python tools/benchmark.py [--arch tiny] [--batch 8] [--size 224 | --size 800 1216] [--device cpu|cuda]
                              [--dtype fp32|bf16|fp16] [--mode infer|train] [--dense] [--compile] [--with-cp]

Prints a table and one JSON line: images/s for ``ours``, ``timm``, ``mmpretrain`` (absent when not installed),
``ratio`` = ours / best reference, peak memory per model (CUDA: max allocated; CPU: peak RSS growth), and on CUDA the
achieved TFLOP/s (FLOPs from davit_backbone.flops, the counter of tools/get_flops.py) and its fraction of the
device's peak. Needs torch and timm only; mmpretrain is optional.

--dense benchmarks the backbones as detectors use them (four NCHW maps, default size 800x1216); otherwise the
ImageNet classifiers. ``ours`` loads timm's weights through the converter; mmpretrain's module (stem padding set to 3,
as the official model) has random weights of the same shapes: speed does not depend on the values.
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from davit_backbone import DaViT, convert_state_dict  # noqa: E402
from davit_backbone.flops import count_macs  # noqa: E402

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


def build_models(arch, dense, with_cp):
    models = {}
    import timm
    ref = timm.create_model(f'davit_{arch}', features_only=dense, **({} if dense else {'num_classes': 1000}))
    if with_cp:
        ref.set_grad_checkpointing(True) if hasattr(ref, 'set_grad_checkpointing') else None
    ours = DaViT(arch, num_classes=0 if dense else 1000, with_cp=with_cp, drop_path_rate=0.0)
    ours.load_state_dict(convert_state_dict(ref.state_dict()), strict=False)
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


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _peak_rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM'):
                return int(line.split()[1])
    return 0


def _reset_peak_rss():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def make_step(model, x, mode, dtype, device):
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else torch.autocast(
        device.type, enabled=False)
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


def run(args):
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    size = tuple(args.size) if args.size else ((800, 1216) if args.dense else (224, 224))
    if len(size) == 1:
        size = (size[0], size[0])
    torch.manual_seed(0)
    models = build_models(args.arch, args.dense, args.with_cp)
    x = torch.randn(args.batch, 3, *size, device=device)
    steps, memory = {}, {}
    for name, m in models.items():
        m.to(device)
        if args.compile:
            m = torch.compile(m)
        steps[name] = make_step(m, x, args.mode, dtype, device)
    # one untimed pass of every model first: otherwise whichever model runs first is charged the process's own
    # allocator and thread-pool start-up in the memory column
    for step in steps.values():
        step()
    # warm-up, and peak memory of each model alone
    for name, step in steps.items():
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _reset_peak_rss()
            base = _peak_rss_kb() * 1024
        for _ in range(args.warmup):
            step()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() if device.type == 'cuda' else _peak_rss_kb() * 1024
        memory[name] = max(0, peak - base) / 2 ** 20
    # interleaved timing: each round times every model once, so drifts (thermal, other load) hit all alike
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.iters):
                step()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / args.iters)
    ips = {name: args.batch / statistics.median(t) for name, t in times.items()}
    refs = {k: v for k, v in ips.items() if k != 'ours'}
    result = {k: round(v, 2) for k, v in ips.items()}
    result['ratio'] = round(ips['ours'] / max(refs.values()), 3) if refs else None
    result['peak_mem_mib'] = {k: round(v, 1) for k, v in memory.items()}
    macs, _ = count_macs(models['ours'].cpu() if device.type == 'cpu' else models['ours'], x[:1])
    flops_per_img = 2 * macs * (3 if args.mode == 'train' else 1)  # backward ~ 2x forward
    result['gflops_per_image'] = round(flops_per_img / 1e9, 2)
    if device.type == 'cuda':
        name = torch.cuda.get_device_name()
        peak = next((v[args.dtype] for k, v in PEAK_TFLOPS.items() if k in name), None)
        result['tflops'] = {k: round(v * flops_per_img / 1e12, 1) for k, v in ips.items()}
        if peak:
            result['fraction_of_peak'] = {k: round(v / peak, 3) for k, v in result['tflops'].items()}
        result['device_name'] = name
    result.update(settings=dict(arch=args.arch, batch=args.batch, size=list(size), device=args.device,
                                dtype=args.dtype, mode=args.mode, dense=args.dense, compile=args.compile,
                                with_cp=args.with_cp, threads=torch.get_num_threads(), torch=torch.__version__,
                                cpu=platform.processor() or platform.machine()))
    return result


def print_table(r):
    names = [k for k in ('ours', 'timm', 'mmpretrain') if k in r]
    s = r['settings']
    print(f"\nDaViT-{s['arch']} {'dense' if s['dense'] else 'classifier'} {s['mode']}, batch {s['batch']} at "
          f"{s['size'][0]}x{s['size'][1]}, {s['device']} {s['dtype']}{' compiled' if s['compile'] else ''}"
          f"{' with_cp' if s['with_cp'] else ''}, torch {s['torch']}, {s['threads']} threads")
    print(f"{'model':<12}{'images/s':>12}{'vs ours':>10}{'peak MiB':>12}" + (f"{'TFLOP/s':>10}" if 'tflops' in r else ''))
    for n in names:
        row = f"{n:<12}{r[n]:>12.2f}{r['ours'] / r[n]:>10.3f}{r['peak_mem_mib'][n]:>12.1f}"
        if 'tflops' in r:
            row += f"{r['tflops'][n]:>10.1f}"
        print(row)
    print(f"ratio (ours / best reference): {r['ratio']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='tiny')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--size', type=int, nargs='+')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='fp32')
    p.add_argument('--mode', choices=['infer', 'train'], default='infer')
    p.add_argument('--dense', action='store_true', help='backbones with out_indices (0,1,2,3), default 800x1216')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--with-cp', action='store_true', help='gradient checkpointing in every model that has it')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--out', help='also append the JSON line to this file')
    args = p.parse_args(argv)
    r = run(args)
    print_table(r)
    line = json.dumps(r)
    print(line)
    if args.out:
        with open(args.out, 'a') as f:
            f.write(line + '\n')


if __name__ == '__main__':
    main()

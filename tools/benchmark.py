#!/usr/bin/env python
"""Speed and memory of our DaViT against timm's and mmpretrain's, in one process, interleaved, after warm-up.

    python tools/benchmark.py [--arch tiny] [--batch 8] [--size 224 | --size 800 1216] [--device cpu|cuda]
                              [--dtype fp32|bf16|fp16] [--mode infer|train] [--dense] [--compile] [--with-cp]
    python tools/benchmark.py --maskrcnn [--size 800 1216] [--device cpu|cuda]
    python tools/benchmark.py --arch huge_fl --dense --mode train --with-cp --ours-only    # memory of a big tower
    python tools/benchmark.py --onnx [--dense] [--size 800 1216]     # + ours exported, in onnxruntime (CPU)
    python tools/benchmark.py --maskrcnn --onnx [--size 800 1216]    # + our whole Mask R-CNN, in onnxruntime
    python tools/benchmark.py --upernet --onnx [--size 512 512]      # whole segmenters, + ours in onnxruntime
    python tools/benchmark.py --onnx --int8 [dynamic|static] ...    # + that graph int8 (tools/deploy.py --int8)
    python tools/benchmark.py --keep-freed-memory ...               # every model without page faults (glibc)

Prints a table and one JSON line: images/s for ``ours`` (with the CPU fast paths this machine chose, see
davit_backbone/kernels.py), ``plain`` (the same model with every fast path off), ``timm``, ``mmpretrain`` (absent
when not installed), ``ratio`` = ours / best reference, ``fast_ratio`` = ours / plain, peak memory of one step per
model (CUDA: max allocated; CPU: peak of the tensor memory PyTorch's allocator handed out, from the profiler's
allocation records), and on CUDA the achieved TFLOP/s (FLOPs from davit_backbone.flops, the counter of
tools/get_flops.py) and its fraction of the device's peak. The models and their steps are mmdavit.benchmarking's;
mmpretrain is optional. ``settings`` says where it ran: the CPU's model name and the instruction set torch
dispatches to (AVX2 / AVX512 / AMX...), threads, torch version, and which fast paths ``ours`` took
(``MMDAVIT_FAST_PATHS=0|1|auto|<paths>`` forces them).

--dense benchmarks the backbones as detectors use them (four NCHW maps, default size 800x1216); otherwise the
ImageNet classifiers. ``ours`` loads timm's weights through the converter; mmpretrain's module (stem padding set to
3, as the official model) has random weights of the same shapes: speed does not depend on the values.
--onnx also exports ours (davit_backbone.export, TorchScript exporter, batch/H/W dynamic) and times it in
onnxruntime's CPU provider with as many threads as torch uses: ``onnxruntime`` images/s and ``onnx_ratio`` =
onnxruntime / ours eager (its memory is onnxruntime's own, which the profiler does not see: n/a). With --maskrcnn,
the whole detector as tools/deploy.py exports it (mmdavit.export.detector_graph), timed with the runtime's
post-processing (boxes rescaled, masks pasted: davit_deploy.detection), against its eager ``test_step``; with
--upernet, the whole segmenter as tools/deploy.py exports it (mmdavit.export.graphs.SegmentorGraph). --int8 also
times that graph's backbone quantised as ``tools/deploy.py --int8`` does (mmdavit.export.quantize; static:
calibrated on the benchmark's own input), interleaved with the rest: ``onnxruntime_int8`` images/s and
``int8_ratio`` = int8 / fp32 onnxruntime.
``page_faults_per_step``: each model's minor page faults per step (the table's faults/step), the pages of fresh
buffers it touched; on CPU they cost as much as a tenth of a step, and with glibc's default malloc how many a model
pays depends on the process's allocation history (mmdavit.benchmarking.keep_freed_memory). --keep-freed-memory
tells glibc to keep freed memory for reuse before anything is built, so that every model runs without them and the
comparison is of compute alone; ``settings.allocator`` says which.
--with-cp also measures ours without checkpointing and reports ``with_cp_memory_ratio`` (peak with / without).
--ours-only leaves timm, mmpretrain and plain out (``ratio`` null): for a tower as big as huge_fl (360M parameters,
their AdamW states and the step's activations) three copies do not fit beside each other, and each costs minutes a
step.
--maskrcnn compares whole detectors instead (needs mmdet): our DaViT-T Mask R-CNN config against mmdet's own Swin-T
Mask R-CNN (same FLOPs class), batch 1 inference through ``test_step`` (preprocessing, backbone, FPN, RPN, RoI and
mask heads, post-processing), random weights and ``score_thr=0`` so both keep 100 detections and run the mask head
on all of them. --upernet does the same for segmenters: our DaViT-T UPerNet config against mmseg's own Swin-T
UPerNet, batch 1 at 512x512 through ``test_step`` (whole-image inference, the class map at the image's size).
"""
import argparse
import json
import os
import platform

import _env  # tools/ is on sys.path as the script's folder

_env.require('torch', 'davit_backbone', 'mmdavit')

import torch  # noqa: E402

from davit_backbone import kernels  # noqa: E402
from davit_backbone.flops import count_macs  # noqa: E402
from davit_backbone.memory import peak_memory_mib  # noqa: E402
from mmdavit.benchmarking import (DTYPES, PEAK_TFLOPS, allocator_setting, build_models, build_ours,  # noqa: E402
                                  build_task_models, keep_freed_memory, make_detector_onnx_step, make_onnx_step,
                                  make_segmentor_onnx_step, make_step, make_task_step, plain_step, time_interleaved)


def run(args):
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    task = 'maskrcnn' if args.maskrcnn else 'upernet' if args.upernet else None  # a whole task model
    if args.maskrcnn and args.upernet:
        raise SystemExit('--maskrcnn or --upernet: one task model at a time')
    default = (800, 1216) if args.dense or args.maskrcnn else (512, 512) if args.upernet else (224, 224)
    size = tuple(args.size) if args.size else default
    if len(size) == 1:
        size = (size[0], size[0])
    if args.onnx and (args.mode != 'infer' or args.dtype != 'fp32' or device.type != 'cpu'):
        raise SystemExit('--onnx times fp32 inference on the CPU')
    if args.int8 and not args.onnx:
        raise SystemExit('--int8 times the onnxruntime graph int8: pass --onnx too')
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit('--keep-freed-memory needs glibc (Linux); this malloc cannot be told')
    torch.manual_seed(0)
    if task:
        if args.mode != 'infer':
            raise SystemExit(f'--{task} measures inference only (use --dense --mode train for the backbones)')
        models, data = build_task_models(task, size)
        x = None
    else:
        models = build_models(args.arch, args.dense, args.with_cp, references=not args.ours_only)
        x = torch.randn(args.batch, 3, *size, device=device)
    if args.compile and device.type == 'cpu' and args.mode == 'infer':
        # inductor's CPU inference recipe: weights frozen as constants, Linear/conv on prepacked oneDNN kernels
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
    steps = {}
    for name, m in models.items():
        m.to(device)
        if args.compile:
            m = torch.compile(m)
        steps[name] = make_task_step(m, data, dtype, device) if task else make_step(m, x, args.mode, dtype, device)
    if 'ours' in steps and not args.compile and not args.ours_only:
        # the same model with every fast path off, interleaved with the rest: what the paths gain (or cost) here
        steps['plain'] = plain_step(steps['ours'])
    onnx_step = {'maskrcnn': make_detector_onnx_step, 'upernet': make_segmentor_onnx_step}.get(task)
    if args.onnx:
        steps['onnxruntime'] = (onnx_step(models['ours'], data, size) if task else make_onnx_step(models['ours'], x))
    if args.int8:
        steps['onnxruntime_int8'] = (onnx_step(models['ours'], data, size, args.int8) if task
                                     else make_onnx_step(models['ours'], x, args.int8))
    if args.with_cp and not task:  # the same model without checkpointing, for the memory ratio only
        plain = build_ours(args.arch, args.dense, with_cp=False).to(device)
        plain.load_state_dict(models['ours'].state_dict())
        extra = {'ours_without_cp': make_step(torch.compile(plain) if args.compile else plain, x, args.mode, dtype,
                                              device)}
    else:
        extra = {}
    # warm-up (compilation, allocator and thread-pool start-up), then the peak memory of one step of each model
    for step in list(steps.values()) + list(extra.values()):
        for _ in range(args.warmup):
            step()
    # the profiler does not see allocations made inside inductor's generated CPU code
    measurable = not (args.compile and device.type == 'cpu')
    memory = {name: peak_memory_mib(step, device) if measurable and not name.startswith('onnxruntime') else None
              for name, step in {**steps, **extra}.items()}
    seconds, faults = time_interleaved(steps, args.rounds, args.iters, device)
    batch = 1 if task else args.batch
    ips = {name: batch / s for name, s in seconds.items()}
    refs = {k: v for k, v in ips.items() if k not in ('ours', 'plain', 'onnxruntime', 'onnxruntime_int8')}
    result = {k: float(f'{v:.4g}') for k, v in ips.items()}  # 4 digits: a loaded CPU's Mask R-CNN runs at 0.1 img/s
    result['ratio'] = round(ips['ours'] / max(refs.values()), 3) if refs else None
    if 'plain' in ips:
        result['fast_ratio'] = round(ips['ours'] / ips['plain'], 3)
    if 'onnxruntime' in ips:
        result['onnx_ratio'] = round(ips['onnxruntime'] / ips['ours'], 3)
    if 'onnxruntime_int8' in ips:
        result['int8_ratio'] = round(ips['onnxruntime_int8'] / ips['onnxruntime'], 3)
    result['peak_mem_mib'] = {k: None if v is None else round(v, 1) for k, v in memory.items()}
    result['page_faults_per_step'] = {k: None if v is None else round(v) for k, v in faults.items()}
    if extra and measurable:
        result['with_cp_memory_ratio'] = round(memory['ours'] / memory['ours_without_cp'], 3)
    if not task:
        macs, _ = count_macs(models['ours'], x[:1])
        flops_per_img = 2 * macs * (3 if args.mode == 'train' else 1)  # backward ~ 2x forward
        result['gflops_per_image'] = round(flops_per_img / 1e9, 2)
        if device.type == 'cuda':
            name = torch.cuda.get_device_name()
            peak = next((v[args.dtype] for k, v in PEAK_TFLOPS.items() if k in name), None)
            result['tflops'] = {k: round(v * flops_per_img / 1e12, 1) for k, v in ips.items()}
            if peak:
                result['fraction_of_peak'] = {k: round(v / peak, 3) for k, v in result['tflops'].items()}
    if device.type == 'cuda':
        result['device_name'] = torch.cuda.get_device_name()
    result.update(settings=dict(arch='tiny' if task else args.arch, batch=batch, size=list(size),
                                device=args.device, dtype=args.dtype, mode=args.mode, dense=args.dense,
                                maskrcnn=args.maskrcnn, upernet=args.upernet, compile=args.compile,
                                with_cp=args.with_cp, onnx=args.onnx,
                                int8=args.int8,
                                ours_only=args.ours_only,
                                threads=torch.get_num_threads(), torch=torch.__version__,
                                cpu=kernels.cpu_model(), capability=torch.backends.cpu.get_cpu_capability(),
                                machine=platform.machine(), cores=os.cpu_count(),
                                fast_paths=sorted(kernels.active_paths()) if device.type == 'cpu' else [],
                                fast_paths_setting=os.environ.get(kernels.ENV_VAR, 'auto'),
                                allocator=allocator_setting(args.keep_freed_memory)))
    return result


def print_table(r):
    names = [k for k in ('ours', 'plain', 'timm', 'mmpretrain', 'swin', 'onnxruntime', 'onnxruntime_int8') if k in r]
    s = r['settings']
    what = 'Mask R-CNN' if s['maskrcnn'] else 'UPerNet' if s['upernet'] else 'dense' if s['dense'] else 'classifier'
    print(f"\nDaViT-{s['arch']} {what} {s['mode']}, batch {s['batch']} at "
          f"{s['size'][0]}x{s['size'][1]}, {s['device']} {s['dtype']}{' compiled' if s['compile'] else ''}"
          f"{' with_cp' if s['with_cp'] else ''}, torch {s['torch']}, {s['threads']} threads")
    print(f"CPU {s['cpu']} ({s['capability']}), fast paths: {', '.join(s['fast_paths']) or 'none'} "
          f"({kernels.ENV_VAR}={s['fast_paths_setting']})")
    print(f"allocator: {s['allocator']}")
    print(f"{'model':<17}{'images/s':>12}{'ours is':>10}{'peak MiB':>12}{'faults/step':>13}"
          + (f"{'TFLOP/s':>10}" if 'tflops' in r else ''))
    for n in names:
        mem, faults = r['peak_mem_mib'][n], r['page_faults_per_step'][n]
        row = f"{n:<17}{r[n]:>12.2f}{r['ours'] / r[n]:>9.3f}x"
        row += f"{mem:>12.1f}" if mem is not None else f"{'n/a':>12}"
        row += f"{faults:>13d}" if faults is not None else f"{'n/a':>13}"
        if 'tflops' in r:
            row += f"{r['tflops'][n]:>10.1f}"
        print(row)
    if r['ratio'] is not None:
        print(f"ratio (ours / best reference): {r['ratio']}")
    if 'fast_ratio' in r:
        print(f"fast_ratio (ours / plain): {r['fast_ratio']}")
    if 'onnx_ratio' in r:
        print(f"onnx_ratio (onnxruntime / ours eager): {r['onnx_ratio']}")
    if 'int8_ratio' in r:
        print(f"int8_ratio (onnxruntime int8 / fp32): {r['int8_ratio']}")
    if 'with_cp_memory_ratio' in r:
        print(f"peak memory with_cp / without (ours): {r['with_cp_memory_ratio']} "
              f"({r['peak_mem_mib']['ours']:.0f} / {r['peak_mem_mib']['ours_without_cp']:.0f} MiB)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='tiny')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--size', type=int, nargs='+')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='fp32')
    p.add_argument('--mode', choices=['infer', 'train'], default='infer')
    p.add_argument('--dense', action='store_true', help='backbones with out_indices (0,1,2,3), default 800x1216')
    p.add_argument('--maskrcnn', action='store_true',
                   help="whole detectors: our DaViT-T Mask R-CNN vs mmdet's Swin-T Mask R-CNN (needs mmdet)")
    p.add_argument('--upernet', action='store_true',
                   help="whole segmenters: our DaViT-T UPerNet vs mmseg's Swin-T UPerNet, 512x512 (needs mmseg)")
    p.add_argument('--compile', action='store_true')
    p.add_argument('--onnx', action='store_true', help='also time ours exported to ONNX in onnxruntime (CPU, fp32)')
    p.add_argument('--int8', nargs='?', const='dynamic', choices=['dynamic', 'static'],
                   help='with --onnx: also time the graph with its backbone int8, as tools/deploy.py --int8 makes it')
    p.add_argument('--with-cp', action='store_true', help='gradient checkpointing in every model that has it')
    p.add_argument('--ours-only', action='store_true', help='no timm/mmpretrain references (big archs: memory, time)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--keep-freed-memory', action='store_true',
                   help="glibc keeps freed memory for reuse (no page faults of fresh buffers), for every model alike")
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

"""The steps of tools/gpu_check.sh, which starts this file three ways (nothing here is library API):

    python tools/_gpu_check.py probe FILE                 # the interpreter's versions and imports -> FILE (JSON)
    python tools/_gpu_check.py ops nms|roi_align cpu|cuda # one mmcv op against its reference; prints one JSON line
    python tools/_gpu_check.py run OUT --mode cpu|cuda --probe FILE --work DIR [--budget S] [--mode-reason TEXT]

``run`` runs every step in a process of its own (a crash in a CUDA op or a hung worker ends that step, not the
check), appends each step's output to OUT/gpu_check.log and rewrites OUT/gpu_check.json and OUT/gpu_check.md after
every step, so that a check stopped from outside still leaves what it had measured. Exit code 1 if a step failed.
Only the standard library is imported at the top: the probe must run in an interpreter that lacks the rest.
"""
import argparse
import ast
import datetime
import glob
import importlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET = 'configs/toy/mask-rcnn_davit-t_toy-coco-quick.py'
SEG = 'configs/toy/upernet_davit-t_toy-ade.py'
# what the steps import, in the order a broken environment is best explained
REQUIRED = ('torch', 'torchvision', 'numpy', 'mmengine', 'mmcv', 'mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain', 'timm',
            'pycocotools')
# issue 14's targets for bf16 DaViT-T training at batch 64, 224x224: recorded beside the figures, a miss is a finding
# for the docs, not a broken check
TARGET_RATIO, TARGET_FRACTION = 1.2, 0.40
# a step killed at its time limit gets this long to end after SIGTERM (torchrun passes it on to its worker)
KILL_GRACE = 10
# no step is started with less than this left of the budget: it could only end killed
MIN_STEP_S = 20
AMP_NEEDS_GPU = "--amp needs a GPU (mmengine's AmpOptimWrapper runs on CUDA)"


# ------------------------------------------------------------------------------------------------------------ probe
def probe(path):
    info = {'python': sys.executable, 'python_version': platform.python_version(), 'versions': {}}
    missing = []
    for name in REQUIRED:
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # an import that fails for any reason (missing, ABI, undefined symbol) is reported
            cause = (str(e).strip().splitlines() or [''])[0][:200]
            missing.append(f'{name} ({type(e).__name__}: {cause})')
            continue
        if '.' not in name:
            info['versions'][name] = str(getattr(mod, '__version__', '?'))
    if 'torch' in info['versions']:
        import torch
        info['torch_cuda'] = torch.version.cuda
        info['cuda_available'] = torch.cuda.is_available()
        if info['cuda_available']:
            info['device_name'] = torch.cuda.get_device_name()
            info['device_capability'] = '%d.%d' % torch.cuda.get_device_capability()
    if not any(m.startswith('mmcv') for m in missing):
        from mmcv.ops import get_compiling_cuda_version
        info['mmcv_cuda'] = get_compiling_cuda_version()  # 'not available' for a CPU-only build
    info['missing'] = missing
    with open(path, 'w') as f:
        json.dump(info, f)
    return 3 if missing else 0


def ops_main(op, device):
    sys.path.insert(0, ROOT)  # run as a script from any folder
    from mmdavit.ops_check import OPS
    r = OPS[op](device)
    r['compared'] = 'CPU vs torchvision, CUDA vs CPU' if device == 'cuda' else 'CPU vs torchvision (no CUDA)'
    print(json.dumps(r))
    return 0 if r['ok'] else 1


# -------------------------------------------------------------------------------------------------------- the steps
def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def last_json_line(text):
    for line in reversed(text.splitlines()):
        if line.startswith('{'):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def last_dict_line(text):
    """The metrics dict tools/test.py prints last."""
    for line in reversed(text.splitlines()):
        if line.startswith('{'):
            try:
                return ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
    return None


def train_numbers(work_dir):
    files = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        return {}, 'no scalars.json in the work dir'
    with open(files[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'loss' in r]
    if not train:
        return {}, 'no training iteration was logged'
    times = sorted(r['time'] for r in train if 'time' in r)
    n = {'iterations': len(train), 'first_loss': round(train[0]['loss'], 4), 'last_loss': round(train[-1]['loss'], 4)}
    if times:
        n['median_iter_s'] = round(times[len(times) // 2], 4)
    mem = [r['memory'] for r in train if 'memory' in r]  # mmengine logs it on CUDA only
    if mem:
        n['max_memory_mib'] = max(mem)
    ckpt_file = os.path.join(work_dir, 'last_checkpoint')
    if os.path.isfile(ckpt_file):
        with open(ckpt_file) as f:
            n['checkpoint'] = os.path.basename(f.read().strip())
    bad = [r['loss'] for r in train if not math.isfinite(r['loss'])]
    return n, (f'{len(bad)} of {len(train)} logged losses are not finite' if bad else None)


class Check:
    def __init__(self, args):
        self.out, self.work, self.mode = args.out, args.work, args.mode
        self.cpu = args.mode == 'cpu'
        with open(args.probe) as f:
            self.env = json.load(f)
        self.budget = args.budget
        self.t0 = time.monotonic()
        self.started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
        self.mode_reason = args.mode_reason
        self.steps, self.by_name = [], {}
        self.log = open(os.path.join(self.out, 'gpu_check.log'), 'a')

    # the environment every step runs in: the repository on the path, the launchers' interpreter, and in CPU mode
    # no GPU at all, so that GPU_CHECK_CPU=1 on a CUDA machine really measures the CPU path
    def step_env(self):
        env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHON=sys.executable,
                   PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
        if self.cpu:
            env['CUDA_VISIBLE_DEVICES'] = ''
        return env

    def remaining(self):
        return None if not self.budget else self.budget - (time.monotonic() - self.t0)

    def record(self, name, what, status, seconds=0.0, command=None, reason=None, numbers=None, tail=None):
        step = {'name': name, 'what': what, 'status': status, 'seconds': round(seconds, 1), 'command': command,
                'reason': reason, 'numbers': numbers or {}}
        if tail:
            step['log_tail'] = tail
        self.steps.append(step)
        self.by_name[name] = step
        note = reason or ', '.join(f'{k} {v}' for k, v in list((numbers or {}).items())[:4])
        print(f'[gpu_check] {name}: {status}{f" in {seconds:.1f} s" if status != "skipped" else ""}'
              f'{f" ({note})" if note else ""}', flush=True)
        self.write()
        return step

    def skip(self, name, what, reason):
        return self.record(name, what, 'skipped', reason=reason)

    def needs(self, name, what, *deps):
        """Records the step as skipped and returns True when a step it builds on did not succeed."""
        for d in deps:
            st = self.by_name.get(d)
            if st is None or st['status'] != 'ok':
                how = 'was skipped' if st and st['status'] == 'skipped' else 'failed'
                # skipped, not failed: the failure is the other step's, and the exit code already says so
                self.record(name, what, 'skipped', reason=f'not run: it needs {d}, which {how}')
                return True
        return False

    def run(self, name, what, cmd, cap, parse=None):
        """Runs ``cmd`` from the repository root with a time limit; ``parse(output)`` -> (numbers, problem)."""
        left = self.remaining()
        if left is not None and left < MIN_STEP_S:
            return self.record(name, what, 'failed', command=' '.join(cmd),
                               reason=f'not run: the time budget (GPU_CHECK_BUDGET={self.budget:g} s) was spent')
        limit = cap if left is None else max(1, min(cap, int(left)))
        env = self.step_env()
        if cmd[:2] == ['bash', 'tools/dist_train.sh'] or cmd[:2] == ['bash', 'tools/dist_test.sh']:
            env['PORT'] = str(free_port())  # other jobs on the machine may hold the launchers' default port
        path = os.path.join(self.work, f'{name}.log')
        shown = ' '.join(cmd)
        print(f'[gpu_check] {name}: {shown}', flush=True)
        t0 = time.monotonic()
        with open(path, 'w') as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            timed_out = False
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                self.stop(proc)
                rc = proc.returncode
            except BaseException:  # the check itself interrupted: the step's group must not outlive it
                self.stop(proc)
                raise
        seconds = time.monotonic() - t0
        with open(path, errors='replace') as f:
            text = f.read()
        self.log.write(f'\n===== {name}: {shown}\n{text}\n===== {name}: exit code {rc}, {seconds:.1f} s\n')
        self.log.flush()
        numbers, problem = {}, None
        if parse and not timed_out:
            try:
                numbers, problem = parse(text)
            except Exception as e:  # one step's odd output must not end the check
                problem = f'could not read its results: {type(e).__name__}: {e}'
        if timed_out:
            reason = f'timed out after {limit} s'
        elif rc != 0:
            last = [ln for ln in text.strip().splitlines() if ln.strip()]
            reason = f'exit code {rc}' + (f': {last[-1].strip()[:300]}' if last else '')
        else:
            reason = problem
        status = 'ok' if not reason else 'failed'
        return self.record(name, what, status, seconds, shown, reason, numbers,
                           tail=text[-3000:] if status == 'failed' else None)

    @staticmethod
    def stop(proc):
        for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # ------------------------------------------------------------------------------------------------- reporting
    def summary(self, finished):
        failed = [s['name'] for s in self.steps if s['status'] == 'failed']
        return {
            'mode': self.mode, 'mode_reason': self.mode_reason, 'started': self.started,
            'seconds': round(time.monotonic() - self.t0, 1), 'finished': finished, 'ok': finished and not failed,
            'budget_s': self.budget or None, 'commit': _commit(), 'host': platform.node(),
            'cpu_cores': os.cpu_count(), 'environment': self.env,
            'steps': self.steps,
            'skipped': {s['name']: s['reason'] for s in self.steps if s['status'] == 'skipped'},
            'failed': failed,
        }

    def write(self, finished=False):
        s = self.summary(finished)
        tmp = os.path.join(self.out, '.gpu_check.json.tmp')
        with open(tmp, 'w') as f:
            json.dump(s, f, indent=1)
        os.replace(tmp, os.path.join(self.out, 'gpu_check.json'))
        with open(os.path.join(self.out, 'gpu_check.md'), 'w') as f:
            f.write(markdown(s))


def _commit():
    try:
        return subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(v):
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 1e-2 and v else f'{v:.4g}'
    if isinstance(v, dict):
        return '/'.join(f'{k} {_fmt(x)}' for k, x in v.items())
    return str(v)


def cell(step):
    text = ', '.join(f'{k} {_fmt(v)}' for k, v in step['numbers'].items())
    if step['reason']:
        text = step['reason'] + (f'; {text}' if text else '')
    return text.replace('|', '\\|').replace('\n', ' ')


def markdown(s):
    e = s['environment']
    v = e.get('versions', {})
    dev = e.get('device_name') or 'no GPU'
    lines = [f"# GPU check: {s['mode']} mode{' (unfinished)' if not s['finished'] else ''}", '',
             f"{s['started']}, commit {s['commit']}, {dev}; Python {e.get('python_version')}, torch "
             f"{v.get('torch')} (CUDA {e.get('torch_cuda')}), mmcv {v.get('mmcv')} (ops CUDA: {e.get('mmcv_cuda')}), "
             f"mmdet {v.get('mmdet')}, mmseg {v.get('mmseg')}, mmpretrain {v.get('mmpretrain')}, timm {v.get('timm')}, "
             f"numpy {v.get('numpy')}. Mode: {s['mode_reason']}. {s['seconds']} s in all; "
             f"{len(s['failed'])} failed, {len(s['skipped'])} skipped.", '',
             '| step | status | seconds | key numbers, or why |', '|---|---|---:|---|']
    for st in s['steps']:
        lines.append(f"| {st['name']} | {st['status']} | {st['seconds']:.1f} | {cell(st)} |")
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------------ the check
def det_options(cpu):
    """Toy Mask R-CNN: a few iterations, checkpoint and validation at the end of the one epoch. score_thr 0: after a
    few iterations from random weights no box may pass 0.05, and COCO's evaluator then returns no metrics at all."""
    n_train, batch, n_val = (2, 1, 1) if cpu else (64, 4, 16)
    return ['train_dataloader.dataset.indices=%d' % n_train, 'train_dataloader.batch_size=%d' % batch,
            'val_dataloader.dataset.indices=%d' % n_val, 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
            'model.test_cfg.rcnn.score_thr=0.0', 'randomness.seed=0']


def seg_options(cpu):
    # batch 2 on CPU, not 1: the pyramid pooling's 1x1 bin leaves BatchNorm one value per channel at batch 1
    n_train, batch, iters, n_val = (2, 2, 2, 1) if cpu else (48, 4, 20, 12)
    return ['train_dataloader.dataset.indices=%d' % n_train, 'train_dataloader.batch_size=%d' % batch,
            'val_dataloader.dataset.indices=%d' % n_val, 'train_cfg.max_iters=%d' % iters,
            'train_cfg.val_interval=%d' % iters, 'default_hooks.checkpoint.interval=%d' % iters,
            'default_hooks.logger.interval=1', 'param_scheduler=[]', 'randomness.seed=0']


def metric_parser(keys):
    def parse(text):
        metrics = last_dict_line(text)
        if not metrics:
            return {}, "no metrics line in tools/test.py's output"
        n = {k: metrics[k] for k in keys if k in metrics}
        missing = [k for k in keys if k not in metrics]
        return n, (f'metrics missing: {", ".join(missing)}' if missing else None)
    return parse


def benchmark_parser(cuda):
    def parse(text):
        r = last_json_line(text)
        if not r:
            return {}, "no JSON line in tools/benchmark.py's output"
        n = {k: r[k] for k in ('ours', 'timm', 'mmpretrain', 'ratio') if k in r}
        for key in ('tflops', 'fraction_of_peak', 'peak_mem_mib'):
            if key in r:
                n[key] = r[key]
        s = r.get('settings', {})
        n['settings'] = f"{s.get('device')} {s.get('dtype')} {s.get('mode')} batch {s.get('batch')} " \
                        f"{'x'.join(map(str, s.get('size', [])))}"
        if cuda:
            frac = (r.get('fraction_of_peak') or {}).get('ours')
            n['targets'] = {f'ratio>={TARGET_RATIO}': r.get('ratio') is not None and r['ratio'] >= TARGET_RATIO,
                            f'peak>={TARGET_FRACTION:.0%}': frac is not None and frac >= TARGET_FRACTION}
            if 'device_name' in r:
                n['device'] = r['device_name']
        return n, None
    return parse


def ops_parser(text):
    r = last_json_line(text)
    if not r:
        return {}, 'no JSON line from the op check'
    r.pop('ok', None)
    r.pop('tolerance', None)
    return r, None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_check(args):
    c = Check(args)
    cpu, py = c.cpu, sys.executable
    no_gpu = f'{AMP_NEEDS_GPU}; CPU mode ({args.mode_reason})'
    # a Ctrl-C or a kill of the check ends the step in flight too (it runs in a process group of its own)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        missing = [k for k, p in (('coco', 'data/toy_coco'), ('ade', 'data/toy_ade'))
                   if not os.path.isdir(os.path.join(ROOT, p))]
        if missing:
            c.run('toy_data', 'the toy COCO and ADE sets (tools/make_toy_data.py)',
                  ['bash', '-c', ' && '.join(f'"$PYTHON" tools/make_toy_data.py {k} data/toy_{k}' for k in missing)],
                  300)
        else:
            c.record('toy_data', 'the toy COCO and ADE sets (tools/make_toy_data.py)', 'ok',
                     numbers={'present': 'data/toy_coco, data/toy_ade'})
        device = 'cpu' if cpu else 'cuda'
        for op in ('nms', 'roi_align'):
            against = 'CPU vs torchvision' if cpu else 'CUDA vs CPU, CPU vs torchvision'
            c.run(f'ops_{op}', f'mmcv.ops.{op}: {against}',
                  [py, 'tools/_gpu_check.py', 'ops', op, device], 120, ops_parser)
        bench = (['--device', 'cpu', '--dtype', 'fp32', '--mode', 'train', '--batch', '2', '--size', '64',
                  '--warmup', '1', '--iters', '1', '--rounds', '1'] if cpu else
                 ['--device', 'cuda', '--dtype', 'bf16', '--mode', 'train', '--batch', '64', '--size', '224'])
        c.run('benchmark', 'DaViT-T training speed, ours vs timm (tools/benchmark.py)',
              [py, 'tools/benchmark.py', *bench], 900 if cpu else 240, benchmark_parser(not cpu))

        for task, cfg, opts, metrics, tests in (
                ('det', DET, det_options(cpu), ['coco/bbox_mAP', 'coco/segm_mAP'], [('test', [])]),
                ('seg', SEG, seg_options(cpu), ['mIoU', 'aAcc'], [('test', []), ('aug_test', ['--aug-test'])])):
            for precision in ('fp32', 'amp'):
                train = f'{task}_train_{precision}'
                what = f'{"Mask R-CNN" if task == "det" else "UPerNet"} {precision}'
                wd = os.path.join(c.work, f'{task}_{precision}')
                amp = precision == 'amp'
                fp16 = ['val_cfg.fp16=True'] if amp else []
                if amp and cpu:
                    c.skip(train, f'{what}: tools/dist_train.sh CONFIG 1 --amp', no_gpu)
                else:
                    # --amp covers inference too: the validation and test loops under autocast (mmengine's fp16)
                    c.run(train, f'{what}: tools/dist_train.sh CONFIG 1' + (' --amp' if amp else ''),
                          ['bash', 'tools/dist_train.sh', cfg, '1', '--work-dir', wd, *(['--amp'] if amp else []),
                           '--cfg-options', *opts, *fp16], 900 if cpu else 180,
                          lambda text, wd=wd: train_numbers(wd))
                for kind, extra in tests:
                    name = f'{task}_{kind}_{precision}'
                    what_t = f'{what}: tools/dist_test.sh CONFIG CKPT 1 {" ".join(extra)}'.rstrip()
                    if amp and cpu:
                        c.skip(name, what_t, no_gpu)
                        continue
                    if c.needs(name, what_t, train):
                        continue
                    ckpt = os.path.join(wd, c.by_name[train]['numbers'].get('checkpoint', 'missing.pth'))
                    n_test = ('2' if task == 'det' else '1') if cpu else ('16' if task == 'det' else '12')
                    test_opts = [f'test_dataloader.dataset.indices={n_test}']
                    if task == 'det':
                        test_opts.append('model.test_cfg.rcnn.score_thr=0.0')
                    if amp:
                        test_opts.append('test_cfg.fp16=True')
                    c.run(name, what_t, ['bash', 'tools/dist_test.sh', cfg, ckpt, '1', *extra,
                                         '--work-dir', os.path.join(c.work, name), '--cfg-options', *test_opts],
                          900 if cpu else 150, metric_parser(metrics))
    except KeyboardInterrupt:
        c.write(finished=False)
        print('[gpu_check] interrupted: the report in OUT is unfinished', file=sys.stderr)
        return 130
    c.write(finished=True)
    c.log.close()
    s = c.summary(True)
    print(f"[gpu_check] {len(c.steps)} steps in {s['seconds']:.0f} s: "
          f"{len(c.steps) - len(s['failed']) - len(s['skipped'])} ok, {len(s['skipped'])} skipped, "
          f"{len(s['failed'])} failed{' (' + ', '.join(s['failed']) + ')' if s['failed'] else ''}; "
          f"{os.path.join(c.out, 'gpu_check.md')}", flush=True)
    return 1 if s['failed'] else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    sp = sub.add_parser('probe')
    sp.add_argument('file')
    so = sub.add_parser('ops')
    so.add_argument('op', choices=['nms', 'roi_align'])
    so.add_argument('device', choices=['cpu', 'cuda'])
    sr = sub.add_parser('run')
    sr.add_argument('out')
    sr.add_argument('--mode', choices=['cpu', 'cuda'], required=True)
    sr.add_argument('--mode-reason', default='')
    sr.add_argument('--probe', required=True)
    sr.add_argument('--work', required=True)
    sr.add_argument('--budget', type=float, default=0.0)
    args = p.parse_args(argv)
    if args.cmd == 'probe':
        return probe(args.file)
    if args.cmd == 'ops':
        return ops_main(args.op, args.device)
    return run_check(args)


if __name__ == '__main__':
    sys.exit(main())

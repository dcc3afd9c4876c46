"""mmcv's compiled detection ops against their references, on CPU and, where there is one, on CUDA: ``nms``
against torchvision's, ``roi_align`` (aligned, as mmdet uses it; forward and backward) against torchvision's, and the
CUDA kernels (fp32, and fp16 as ``--amp`` runs them) against mmcv's CPU result. A wheel of mmcv compiled for another
CUDA, or without its ops, fails here in seconds instead of hours into a detector's training.

``OPS[name](device)`` returns one JSON-able dict of differences, tolerances and ``ok``; ``tools/gpu_check.sh`` runs
each in a process of its own (``tools/_gpu_check.py ops NAME cpu|cuda``), so that a crashing kernel ends that step.
"""
import math

__all__ = ['ops_nms', 'ops_roi_align', 'OPS']


def _max_diff(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def ops_nms(device):
    """mmcv's nms on random boxes: CPU against torchvision's, and the CUDA kernel against mmcv's CPU result."""
    import torch
    import torchvision
    from mmcv.ops import nms
    g = torch.Generator().manual_seed(0)
    n, thr = 3000, 0.5
    xy = torch.rand(n, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 1], 1)
    scores = torch.rand(n, generator=g)
    dets, keep = nms(boxes, scores, thr)
    ref = torchvision.ops.nms(boxes, scores, thr)
    r = {'boxes': n, 'kept_cpu': len(keep), 'cpu_equals_torchvision': keep.tolist() == ref.tolist()}
    ok = r['cpu_equals_torchvision']
    if device == 'cuda':
        dets_c, keep_c = nms(boxes.cuda(), scores.cuda(), thr)
        torch.cuda.synchronize()
        keep_c = keep_c.cpu()
        r['kept_cuda'] = len(keep_c)
        r['cuda_equals_cpu'] = keep_c.tolist() == keep.tolist()
        # the boxes and scores of the kept detections, where both kept the same number
        r['cuda_vs_cpu_max_diff'] = _max_diff(dets_c.cpu(), dets) if len(keep_c) == len(keep) else None
        ok = ok and r['cuda_equals_cpu']
    r['ok'] = ok
    return r


def ops_roi_align(device):
    """mmcv's roi_align (aligned=True, as mmdet uses it) forward and backward: CPU against torchvision's, CUDA (fp32
    and, for --amp, fp16) against mmcv's CPU result."""
    import torch
    import torchvision
    from mmcv.ops import roi_align
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 40, 48, generator=g)
    k, scale, out = 200, 0.25, (7, 7)
    xy = torch.rand(k, 2, generator=g) * 150
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy,
                      xy + torch.rand(k, 2, generator=g) * 40 + 0.5], 1)
    weight = torch.randn(k, 16, *out, generator=g)

    def run(fn, x, r, ratio):
        x = x.detach().clone().requires_grad_(True)
        y = fn(x, r, ratio)
        (y.float() * weight.to(y.device)).sum().backward()
        return y.detach(), x.grad.detach()

    def mm(x, r, ratio):
        return roi_align(x, r, out, scale, ratio, 'avg', True)

    def tv(x, r, ratio):
        return torchvision.ops.roi_align(x, r, out, scale, ratio if ratio > 0 else -1, aligned=True)

    tol_out, tol_grad = 1e-5, 1e-4
    r, ok = {'rois': k}, True
    for ratio in (2, 0):  # 0: the adaptive grid of mmdet's configs (torchvision spells it -1)
        y, gx = run(mm, feats, rois, ratio)
        y_ref, gx_ref = run(tv, feats, rois, ratio)
        r[f'sr{ratio}_cpu_vs_torchvision'] = _max_diff(y, y_ref)
        r[f'sr{ratio}_grad_cpu_vs_torchvision'] = _max_diff(gx, gx_ref)
        ok = ok and r[f'sr{ratio}_cpu_vs_torchvision'] < tol_out and r[f'sr{ratio}_grad_cpu_vs_torchvision'] < tol_grad
        if device == 'cuda':
            yc, gc = run(mm, feats.cuda(), rois.cuda(), ratio)
            r[f'sr{ratio}_cuda_vs_cpu'] = _max_diff(yc.cpu(), y)
            r[f'sr{ratio}_grad_cuda_vs_cpu'] = _max_diff(gc.cpu(), gx)
            ok = ok and r[f'sr{ratio}_cuda_vs_cpu'] < tol_out and r[f'sr{ratio}_grad_cuda_vs_cpu'] < tol_grad
    if device == 'cuda':
        # under --amp mmdet casts the rois to the features' half too; the reference takes the same rounded inputs,
        # so that the difference is the kernel's half arithmetic, not fp16's 1/8 px on coordinates near 200
        feats_h, rois_h = feats.half(), rois.half()
        yh, _ = run(mm, feats_h.cuda(), rois_h.cuda(), 0)
        r['fp16_cuda_vs_fp32_cpu'] = _max_diff(yh.float().cpu(), run(mm, feats_h.float(), rois_h.float(), 0)[0])
        ok = ok and math.isfinite(r['fp16_cuda_vs_fp32_cpu']) and r['fp16_cuda_vs_fp32_cpu'] < 2e-2
    r['tolerance'] = {'out': tol_out, 'grad': tol_grad, 'fp16': 2e-2 if device == 'cuda' else None}
    r['ok'] = ok
    return r


OPS = {'nms': ops_nms, 'roi_align': ops_roi_align}

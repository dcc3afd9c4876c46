#!/usr/bin/env python
"""Exports a trained classifier (mmpretrain), segmenter (mmseg) or detector (mmdet RetinaNet, Faster / Mask R-CNN)
to ONNX, ready for onnxruntime alone.

    python tools/deploy.py CONFIG CKPT --out DIR [--shape H W] [--opset N] [--exporter torchscript|dynamo]
                           [--min-size N] [--max-size N] [--verify IMAGE_OR_DIR] [--int8 [dynamic|static]]

Writes DIR/model.onnx (one graph from a preprocessed image batch, any size within --min-size..--max-size, to the
predictions: logits and scores, the class map at input size, or the detections after NMS with their masks) and
DIR/deploy.json (the preprocessing, class names and palette, the export's provenance and its verification, the
onnxruntime session settings chosen for the task). Before
DIR appears, the exported graph and the PyTorch model run on the --verify images (else generated ones, at sizes
other than the export's) and must agree: logits within 1e-4, class maps on >= 99.9% of pixels; every detection of
mmdet's own predict scoring >= 0.3 has a twin of the same class with box IoU >= 0.95, score within 0.02 and mask IoU
>= 0.95. Run the folder with ``tools/infer.py DIR IMAGE_OR_DIR --out OUT``.
--int8 (off by default) then quantises the verified graph's backbone with onnxruntime (mmdavit.export.quantize:
dynamic, or static calibrated on the verification images), verifies that graph too, within the looser
INT8_TOLERANCES of mmdavit.export.verify, and the folder holds it as model-int8.onnx instead of model.onnx
(docs/deployment.md#int8: what it costs, where it pays).
Everything is written under a temporary name and renamed into place last: a failed export leaves nothing behind.
"""
import argparse
import datetime
import os
import os.path as osp
import shutil
import sys
import time

import _cli as ru  # tools/ is on sys.path as the script's folder; first: it checks the environment (_env)
import _config  # noqa: E402
from davit_deploy.folder import QUANT_METHODS  # noqa: E402
from mmdavit.checkpoints.reader import Checkpoint, build_model  # noqa: E402
from mmdavit.export.verify import (INT8_TOLERANCES, TOLERANCES, Disagreement, calibration_feeds,  # noqa: E402
                                   generated_images, verify, verify_detector)

# where the graph's disagreement with PyTorch leaves the user (mmdavit.export.verify measures it)
ADVICE = {'exported graph': 'try --exporter dynamo or another --opset, and report it',
          'exported detector graph': 'try another --opset, and report it',
          'int8 graph': 'deploy without --int8 (or, after --int8 static, with --int8 dynamic)'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export a DaViT classifier, segmenter or detector to ONNX (onnxruntime)')
    p.add_argument('config', help='config file the checkpoint was trained with')
    p.add_argument('checkpoint', help='checkpoint file (tools/train.py output, or a whole-model checkpoint)')
    p.add_argument('--out', required=True, help='folder to create (model.onnx, deploy.json); must not exist')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=(448, 480),
                   help='example input size for the export (the graph takes any size in the range; default '
                        '448 480, at which every stage has several windows)')
    p.add_argument('--opset', type=int, default=None, help='ONNX opset (default 18)')
    p.add_argument('--exporter', choices=['torchscript', 'dynamo'], default='torchscript',
                   help="torch's exporter: torchscript (torch.onnx.export(dynamo=False), default) or dynamo "
                        '(torch.export first; not for detectors)')
    p.add_argument('--min-size', type=int, default=None, help='smallest input side the graph takes (default 33)')
    p.add_argument('--max-size', type=int, default=4096, help='largest input side the graph takes (default 4096)')
    p.add_argument('--verify', metavar='IMAGE_OR_DIR', default=None,
                   help='images to compare the export with PyTorch on (default: generated ones)')
    p.add_argument('--int8', nargs='?', const='dynamic', choices=QUANT_METHODS, default=None,
                   help="quantise the backbone to int8 after the fp32 graph is verified (onnxruntime's quantisation; "
                        'dynamic, the default, or static: calibrated on the --verify images) and deploy that graph, '
                        'verified within looser tolerances; pays on CPUs with VNNI or AMX (docs/deployment.md#int8)')
    p.add_argument('--cfg-options', nargs='+', action=ru.DictAction, dest='cfg_options',
                   help='override config keys, e.g. model.test_cfg.mode=whole')
    return p.parse_args(argv)


def refusal(e) -> str:
    """mmdavit.export.graphs's refusal of a model or config in this tool's words: the override to pass, or the
    command that runs the model as it is."""
    if e.cfg_option:
        return f'{e}: pass --cfg-options {e.cfg_option}'
    if e.runs_in_pytorch:
        return f'{e}; run this model with tools/infer.py CONFIG CKPT'
    return str(e)


def verification_images(path, shape):
    """The user's images (BGR), else three generated ones (mmdavit.export.verify.generated_images)."""
    if path:
        from davit_deploy.errors import ImageError
        from davit_deploy.images import list_images, read_image
        try:
            return [(p, read_image(p)) for p in list_images(path)]
        except ImageError as e:
            raise ru.UserError(f'--verify: {e}') from None
    return generated_images(shape)


def verified(check, *args):
    """``check(*args)`` (a verification of mmdavit.export.verify) with its refusals in this tool's words."""
    from davit_deploy.errors import InputSizeError
    try:
        return check(*args)
    except InputSizeError as e:
        raise ru.UserError(f'--verify image {e.name} is {e.size[0]} x {e.size[1]} after preprocessing, outside '
                           f'the graph\'s {e.lo}..{e.hi}: pass --min-size/--max-size to cover it') from None
    except Disagreement as e:
        raise ru.UserError(f'{e}; nothing was written: {ADVICE[e.what]}') from None


def int8(args, tmp, scope, check, recipe, images, lo, hi, fp32_rows):
    """The verified fp32 graph in ``tmp`` quantised (mmdavit.export.quantize) and verified by ``check(session,
    tolerances, what)`` within INT8_TOLERANCES; the fp32 graph removed. Returns (deploy.json's quantization,
    verification)."""
    from davit_deploy import folder
    from davit_deploy.model import onnx_session
    from mmdavit.export.quantize import QuantizeError, quantize
    src, dst = osp.join(tmp, folder.MODEL_FILE), osp.join(tmp, folder.INT8_MODEL_FILE)
    source = '--verify' if args.verify else 'generated verification'
    feeds = []
    if args.int8 == 'static':  # the batches the verification ran, preprocessed as the runtime does
        feeds = verified(calibration_feeds, scope, images, recipe, lo, hi)
        print(f'int8: calibrating on the {len(feeds)} {source} image(s)' + (
            '' if args.verify else ': pass --verify with images like those the model will see'))
    t0 = time.time()
    try:
        settings = quantize(src, dst, args.int8, feeds)
    except QuantizeError as e:
        raise ru.UserError(f'--int8: {e}; nothing was written: deploy without --int8') from None
    os.remove(src)
    print(f'int8 ({args.int8}): quantised the backbone\'s ' + ', '.join(
        f'{n} {t}' for t, n in settings['quantized_nodes'].items()) + f' in {time.time() - t0:.1f} s; verifying it')
    rows = check(onnx_session(dst, settings=folder.TASK_SESSION[scope]), INT8_TOLERANCES, 'int8 graph')
    settings.update(tolerances=INT8_TOLERANCES, fp32_verification=fp32_rows)
    if args.int8 == 'static':
        settings.update(calibration_images=len(feeds), calibration_source=source)
    return settings, rows


def main(argv=None):
    args = parse_args(argv)
    out = osp.abspath(args.out)
    if osp.exists(out):
        raise ru.UserError(f'--out {args.out!r} exists: remove it or choose another folder')
    parent = osp.dirname(out)
    if osp.exists(parent) and not osp.isdir(parent):
        raise ru.UserError(f'--out {args.out!r}: {parent!r} is a file, not a folder')
    cfg = _config.load_config(args.config, args.cfg_options, None)
    scope = cfg.default_scope
    from davit_backbone.export import DEFAULT_OPSET, DYNAMO_MIN_SIZE, export_onnx
    from davit_deploy import folder
    from davit_deploy.model import onnx_session  # verified in the runtime's own session
    from mmdavit.data.meta import class_names, config_dataset_meta
    from mmdavit.export.detector_graph import UnsupportedDetector, check_opset, export_detector
    from mmdavit.export.graphs import DeployError, check_scope, graph_for, postprocess_recipe, preprocess_recipe
    try:
        check_scope(scope)
    except DeployError as e:
        raise ru.UserError(refusal(e)) from None
    lo, hi = args.min_size or DYNAMO_MIN_SIZE, args.max_size
    if not 1 <= lo <= min(args.shape) <= max(args.shape) <= hi:
        raise ru.UserError(f'--shape {args.shape[0]} {args.shape[1]} must lie within --min-size {lo} and '
                           f'--max-size {hi}')
    if scope == 'mmdet':
        try:
            check_opset(args.opset or DEFAULT_OPSET)
        except UnsupportedDetector as e:
            raise ru.UserError(f'--{e}') from None
    if scope == 'mmdet' and args.exporter == 'dynamo':
        raise ru.UserError('--exporter dynamo does not export detectors (their NMS is written for the TorchScript '
                           'exporter): leave --exporter at torchscript')
    if args.int8 and args.exporter == 'dynamo':
        raise ru.UserError('--int8 quantises graphs of the TorchScript exporter (it finds the backbone\'s layers by '
                           'the module names that exporter gives the nodes): leave --exporter at torchscript')
    from mmdavit.export.quantize import MIN_OPSET
    if args.int8 and (args.opset or DEFAULT_OPSET) < MIN_OPSET:
        raise ru.UserError(f'--int8 needs --opset {MIN_OPSET} or newer (per-channel int8 weights): raise --opset '
                           'or leave it out')
    if args.exporter == 'dynamo' and lo < DYNAMO_MIN_SIZE:
        raise ru.UserError(f'--exporter dynamo takes inputs of {DYNAMO_MIN_SIZE} pixels a side or more: '
                           f'raise --min-size or use --exporter torchscript')
    images = verification_images(args.verify, args.shape)  # checked before the long part
    ckpt = Checkpoint(args.checkpoint)  # read once

    import torch
    model = build_model(cfg)
    ckpt.load_into(model)
    note = ckpt.check_fits(model, scope)
    if note:
        print(note)
    model.eval()
    try:
        graph = graph_for(scope, model)
        reference = graph_for(scope, model, exportable=False) if scope != 'mmdet' else None
        recipe = preprocess_recipe(cfg, model)
    except DeployError as e:
        raise ru.UserError(refusal(e)) from None
    classes, palette = class_names(ckpt.dataset_meta, config_dataset_meta(cfg))
    del ckpt

    tmp = f'{out}.tmp-{os.getpid()}'
    made_parent = not osp.isdir(parent)  # e.g. deployed/ on the first export: made here, removed if it fails
    os.makedirs(tmp)
    try:
        t0 = time.time()
        example = torch.randn(2, 3, *args.shape)
        try:
            if scope == 'mmdet':
                export_detector(graph, osp.join(tmp, folder.MODEL_FILE), args.shape, args.opset or DEFAULT_OPSET)
            else:
                export_onnx(graph, osp.join(tmp, folder.MODEL_FILE), example, dynamo=args.exporter == 'dynamo',
                            opset=args.opset, output_names=graph.output_names, min_size=lo, max_size=hi)
        except Exception as e:  # noqa: BLE001  an op or size rule the exporter refuses: one line, not its traceback
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            raise ru.UserError(f'{args.exporter} export failed ({type(e).__name__}: '
                               f'{lines[0][:300] if lines else ""}); nothing was written: try the other '
                               '--exporter or another --opset') from None
        export_s = time.time() - t0
        print(f'exported {scope} model with the {args.exporter} exporter in {export_s:.1f} s')
        # verified in the session settings the folder will run with (deploy.json's runtime)
        session = onnx_session(osp.join(tmp, folder.MODEL_FILE), settings=folder.TASK_SESSION[scope])
        post = postprocess_recipe(cfg)

        def check(session, tol=TOLERANCES, what='exported graph'):
            if scope == 'mmdet':
                return verified(verify_detector, model, session, recipe, images, lo, hi, post['mask_thr_binary'],
                                tol, 'exported detector graph' if what == 'exported graph' else what)
            return verified(verify, scope, reference, session, recipe, images, lo, hi, tol, what)
        rows = check(session)
        quantization = None
        if args.int8:
            del session
            quantization, rows = int8(args, tmp, scope, check, recipe, images, lo, hi, rows)
        source = dict(config=args.config, checkpoint=args.checkpoint, exporter=args.exporter,
                      opset=args.opset or DEFAULT_OPSET, torch=torch.__version__, export_shape=list(args.shape),
                      date=datetime.date.today().isoformat())
        folder.write(tmp, folder.new_meta(
            scope, outputs=graph.output_names, preprocess=recipe, classes=classes, palette=palette, min_size=lo,
            max_size=hi, source=source, verification=rows, size_input='image_size' if scope == 'mmdet' else None,
            postprocess=post if scope == 'mmdet' else None, quantization=quantization))
        os.rename(tmp, out)
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp)
            if made_parent and not os.listdir(parent):
                os.rmdir(parent)
    name = folder.INT8_MODEL_FILE if args.int8 else folder.MODEL_FILE
    size = osp.getsize(osp.join(out, name)) / 2 ** 20
    print(f'deployed to {args.out}: {name} ({size:.1f} MiB), deploy.json; run it with '
          f'python tools/infer.py {args.out} IMAGE_OR_DIR --out OUT')
    return 0


if __name__ == '__main__':
    ru.run_main(main)
    sys.exit(0)

"""The dataset a config names, checked against its files before a run spends hours on them.

mmdet's ``CocoDataset`` maps ``metainfo.classes`` to the annotation file's categories by name and silently drops a
name the file does not have: a typo (``'cheery'`` for ``'cherry'``) trains to the end without that class's boxes,
then fails in the COCO evaluator (``IndexError`` in ``results2json``), and the predictions carry the typo. An image
the file lists but the folder lacks, or a label value a segmentation head has no output for, fails only when the
sampler reaches it: minutes or hours into the run. Here all of that is looked at first, from the annotation files
and folder listings (no image is decoded; a corrupt image is handled when it is met, by
:mod:`mmdavit.corrupt_images`). The functions take plain values and raise :class:`DataCheckError`; the tools turn it
into one line and exit code 2.
"""
from __future__ import annotations

import difflib
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ['DataCheckError', 'coco_category_names', 'check_coco_classes', 'CocoReport', 'check_coco_file',
           'SegReport', 'check_seg_maps', 'check_num_classes']

# the segmentation maps read by check_seg_maps: evenly spread over the set, so that ADE20K's 20k maps take seconds
SEG_MAPS_READ = 500


class DataCheckError(ValueError):
    """A dataset that does not match its config; ``path`` is the file or folder concerned, ``names`` the names or
    values concerned."""

    def __init__(self, message: str, path: str, names: Sequence = ()):
        super().__init__(message)
        self.path, self.names = path, list(names)


def _first(items: Sequence, n: int = 3) -> str:
    return ', '.join(map(str, items[:n])) + (f' and {len(items) - n} more' if len(items) > n else '')


def _load_coco(ann_file: str) -> dict:
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        [c['name'] for c in coco['categories']]
        return coco
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataCheckError(f'{ann_file} is not a COCO annotation file with categories ({type(e).__name__}: '
                             f'{e})', ann_file) from None


def coco_category_names(ann_file: str) -> List[str]:
    """The category names of a COCO-format annotation file, in the file's order."""
    return [c['name'] for c in _load_coco(ann_file)['categories']]


def _classes_against(names: Sequence[str], classes: Sequence[str], ann_file: str) -> List[str]:
    missing = [c for c in classes if c not in names]
    if missing:
        near = difflib.get_close_matches(missing[0], names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ''
        raise DataCheckError(
            f"class {missing[0]!r} of the config's metainfo.classes is not a category of {ann_file}{hint}; "
            f'its categories are {list(names[:12])}{" ..." if len(names) > 12 else ""}: use the names as the file '
            'spells them, in every dataloader', ann_file, missing)
    return [n for n in names if n not in classes]


def check_coco_classes(ann_file: str, classes: Sequence[str]) -> List[str]:
    """Raises when a class of the config is not a category of ``ann_file`` (naming it and the nearest category);
    returns the file's categories that the config leaves out (their annotations are not trained on: mmdet's
    behaviour for training on some categories only)."""
    return _classes_against(coco_category_names(ann_file), classes, ann_file)


@dataclass
class CocoReport:
    """What :func:`check_coco_file` counted. ``partly_outside`` boxes are kept (mmdet's ``Resize`` clips them to the
    image); ``outside`` and ``empty`` ones are dropped by mmdet's ``CocoDataset`` when it loads the file."""
    ann_file: str
    images: int = 0
    boxes: int = 0
    left_out_categories: List[str] = field(default_factory=list)
    partly_outside: int = 0
    outside: int = 0
    empty: int = 0
    images_without_boxes: int = 0

    def notes(self) -> List[str]:
        """One line per thing a user should know, each saying what happens to it."""
        out, f = [], self.ann_file
        if self.left_out_categories:
            n = len(self.left_out_categories)
            out.append(f'{n} categor{"y" if n == 1 else "ies"} of {f} not in metainfo.classes, whose annotations '
                       f'are not trained on or evaluated: {self.left_out_categories[:8]}')
        if self.partly_outside:
            out.append(f'{self.partly_outside} of {self.boxes} boxes in {f} reach outside their image: kept, and '
                       'clipped to the image by the pipeline\'s Resize')
        if self.outside or self.empty:
            out.append(f'{self.outside + self.empty} of {self.boxes} boxes in {f} are dropped by mmdet when it loads '
                       f'the file: {self.outside} entirely outside their image, {self.empty} empty (width or height '
                       '< 1 pixel, or area <= 0)')
        if self.images_without_boxes:
            out.append(f'{self.images_without_boxes} of {self.images} images in {f} have no box of the config\'s '
                       'classes: left out of training where filter_cfg.filter_empty_gt is True (as in mmdet\'s COCO '
                       'configs), kept for evaluation')
        return out


def _file_names(folder: str) -> set:
    try:
        return {e.name for e in os.scandir(folder)}
    except OSError:
        return set()


def check_coco_file(ann_file: str, img_dir: Optional[str], classes: Sequence[str]) -> CocoReport:
    """Class names against the file's categories, the file's images against ``img_dir``, and its boxes against their
    images. Raises :class:`DataCheckError` for a class the file lacks and for images the folder lacks (either would
    fail or mislead only hours later); counts what mmdet drops or clips on its own (:class:`CocoReport`).

    One pass over the JSON and one listing of the folder: COCO's 118k training images take about as long as
    ``json.load`` of the file."""
    coco = _load_coco(ann_file)
    names = [c['name'] for c in coco['categories']]
    report = CocoReport(ann_file, left_out_categories=_classes_against(names, classes, ann_file))
    images = coco.get('images') or []
    report.images = len(images)
    if img_dir is not None:
        present = _file_names(img_dir)
        missing = [im['file_name'] for im in images
                   if im['file_name'] not in present and not osp.exists(osp.join(img_dir, im['file_name']))]
        if missing:
            raise DataCheckError(
                f'{len(missing)} of the {len(images)} images listed in {ann_file} {"is" if len(missing) == 1 else "are"}'
                f' not in {img_dir}: {_first(missing)}. Copy them there, or point data_prefix.img at the folder that '
                'holds them', img_dir, missing)
    size = {im['id']: (im.get('width'), im.get('height')) for im in images}
    wanted = {c['id'] for c in coco['categories'] if c['name'] in classes}
    with_box = set()
    for ann in coco.get('annotations') or []:
        if ann.get('ignore', False) or ann.get('category_id') not in wanted:
            continue
        report.boxes += 1
        x, y, w, h = ann['bbox']
        width, height = size.get(ann['image_id'], (None, None))
        if width is not None and height is not None:
            inter = max(0, min(x + w, width) - max(x, 0)) * max(0, min(y + h, height) - max(y, 0))
            if inter == 0:
                report.outside += 1
                continue
            if x < 0 or y < 0 or x + w > width or y + h > height:
                report.partly_outside += 1
        if ann.get('area', w * h) <= 0 or w < 1 or h < 1:
            report.empty += 1
            continue
        with_box.add(ann['image_id'])
    report.images_without_boxes = sum(1 for im in images if im['id'] not in with_box)
    return report


@dataclass
class SegReport:
    """What :func:`check_seg_maps` looked at: ``values`` are the raw pixel values found in the maps read;
    ``zero_is_a_class``: with ``reduce_zero_label``, the maps look numbered from 0 (they hold 0 beside 255, or their
    values end at ``num_classes - 1``), so the first class would be ignored and every other named one off."""
    seg_dir: str
    maps: int = 0
    read: int = 0
    values: List[int] = field(default_factory=list)
    zero_is_a_class: bool = False

    def notes(self, num_classes: int) -> List[str]:
        out = []
        if self.read < self.maps:
            out.append(f'label values checked in {self.read} of the {self.maps} maps of {self.seg_dir}, spread over '
                       'the set')
        if self.zero_is_a_class:
            out.append(f'the label maps of {self.seg_dir} hold values {self.values[:8]}: with reduce_zero_label=True '
                       f'0 is "no label" and value k + 1 is classes[k]. If 0 is your first class (values 0..'
                       f'{num_classes - 1}, 255 = no label), set reduce_zero_label=False in the dataset and in '
                       'LoadAnnotations')
        return out


def check_seg_maps(img_dir: str, seg_dir: str, img_suffix: str, seg_map_suffix: str, num_classes: int,
                   reduce_zero_label: bool, ignore_index: int = 255, read: int = SEG_MAPS_READ) -> SegReport:
    """Every image of ``img_dir`` has its map in ``seg_dir`` (mmseg pairs them by name), and the label values of up
    to ``read`` maps, evenly spread, fit the head: ``0 .. num_classes - 1`` and ``ignore_index``, after
    ``reduce_zero_label`` (0 becomes ignored, v becomes v - 1). A value out of range trains into an index error
    (CPU) or a device assert (CUDA) when its map is reached."""
    def listing(folder, suffix):
        out = []
        for dirpath, _, files in os.walk(folder):
            rel = osp.relpath(dirpath, folder)
            out += [osp.normpath(osp.join(rel, f))[:-len(suffix)] for f in files if f.endswith(suffix)]
        return sorted(out)

    stems = listing(img_dir, img_suffix)
    maps = set(listing(seg_dir, seg_map_suffix))
    missing = [s + seg_map_suffix for s in stems if s not in maps]
    if missing:
        raise DataCheckError(f'{len(missing)} of the {len(stems)} images in {img_dir} have no label map in {seg_dir}'
                             f' (mmseg pairs them by name, {img_suffix} -> {seg_map_suffix}): {_first(missing)}',
                             seg_dir, missing)
    from PIL import Image
    report = SegReport(seg_dir, maps=len(stems))
    chosen = stems if len(stems) <= read else [stems[i] for i in np.linspace(0, len(stems) - 1, read).astype(int)]
    found: Dict[int, str] = {}
    for stem in chosen:
        path = osp.join(seg_dir, stem + seg_map_suffix)
        try:
            with Image.open(path) as im:
                values = np.unique(np.asarray(im))
        except (OSError, ValueError) as e:
            raise DataCheckError(f'label map {path} cannot be read ({type(e).__name__}: {e}): replace it', path,
                                 [path]) from None
        for v in values.tolist():
            found.setdefault(int(v), path)
    report.read, report.values = len(chosen), sorted(found)
    labels = [v for v in report.values if v != ignore_index and v != 255]
    report.zero_is_a_class = bool(reduce_zero_label and 0 in report.values and labels and (
        255 in report.values or max(labels) == num_classes - 1))
    top = num_classes if reduce_zero_label else num_classes - 1
    bad = [v for v in report.values if v > top and v != ignore_index]
    if bad:
        v = bad[-1]
        if not reduce_zero_label and v == num_classes:
            advice = (f'if 0 means "no label" in your maps (values 1..{num_classes} being the classes), set '
                      'reduce_zero_label=True in the dataset and in LoadAnnotations')
        else:
            advice = (f'the maps hold labels for more classes than the {num_classes} of the head: set num_classes '
                      f'and metainfo.classes to match, or map value {v} to {ignore_index} ("ignored")')
        raise DataCheckError(
            f'label value {v} in {found[v]} (and {len(bad) - 1} other value(s) over the range) is out of range for '
            f'num_classes={num_classes} with reduce_zero_label={reduce_zero_label} (allowed: 0..{top}'
            f', {ignore_index} = ignored): {advice}', found[v], bad)
    return report


def check_num_classes(classes: Sequence[str], heads: Dict[str, object], where: str) -> None:
    """Each head's ``num_classes`` equals the number of class names (``heads``: config key -> value). mmdet and
    mmseg take both as given: too few outputs fail in the loss, too many train outputs nothing ever asks for."""
    for key, value in heads.items():
        if isinstance(value, int) and not isinstance(value, bool) and value != len(classes):
            raise DataCheckError(
                f'{key}={value} but {where} names {len(classes)} classes ({_first(list(classes))}): set '
                f'{key}={len(classes)} (every head that classifies counts the same classes)', where, [key])

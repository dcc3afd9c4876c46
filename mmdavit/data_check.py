"""The dataset a config names, checked against its annotation files before a run spends hours on them.

mmdet's ``CocoDataset`` maps ``metainfo.classes`` to the annotation file's categories by name and silently drops a
name the file does not have: a typo (``'cheery'`` for ``'cherry'``) trains to the end without that class's boxes,
then fails in the COCO evaluator (``IndexError`` in ``results2json``), and the predictions carry the typo. Here the
names are compared first; the tools turn :class:`DataCheckError` into one line and exit code 2.
"""
from __future__ import annotations

import difflib
import json
from typing import List, Sequence

__all__ = ['DataCheckError', 'coco_category_names', 'check_coco_classes']


class DataCheckError(ValueError):
    """A dataset that does not match its config; ``path`` is the annotation file, ``names`` the names concerned."""

    def __init__(self, message: str, path: str, names: Sequence[str] = ()):
        super().__init__(message)
        self.path, self.names = path, list(names)


def coco_category_names(ann_file: str) -> List[str]:
    """The category names of a COCO-format annotation file, in the file's order."""
    try:
        with open(ann_file) as f:
            categories = json.load(f)['categories']
        return [c['name'] for c in categories]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataCheckError(f'{ann_file} is not a COCO annotation file with categories ({type(e).__name__}: '
                             f'{e})', ann_file) from None


def check_coco_classes(ann_file: str, classes: Sequence[str]) -> List[str]:
    """Raises when a class of the config is not a category of ``ann_file`` (naming it and the nearest category);
    returns the file's categories that the config leaves out (their annotations are not trained on: mmdet's
    behaviour for training on some categories only)."""
    names = coco_category_names(ann_file)
    missing = [c for c in classes if c not in names]
    if missing:
        near = difflib.get_close_matches(missing[0], names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ''
        raise DataCheckError(
            f"class {missing[0]!r} of the config's metainfo.classes is not a category of {ann_file}{hint}; "
            f'its categories are {names[:12]}{" ..." if len(names) > 12 else ""}: use the names as the file spells '
            'them, in every dataloader', ann_file, missing)
    return [n for n in names if n not in classes]

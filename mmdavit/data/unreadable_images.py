"""An image that cannot be decoded, met mid-run, costs one sample instead of the run.

mmcv's ``LoadImageFromFile`` fails on a truncated or corrupt file with an assertion, and mmengine's dataset retries
only a pipeline that returns ``None``: one bad JPEG among a million ends a multi-day run when the sampler reaches it.
:func:`skipping_unreadable_images` makes a Runner class (the tools', for any config) build its parts so that:

- in training, :class:`SkipUnreadableImages` (a dataset wrapper) catches the failure, makes sure the image itself is
  what fails (a pipeline bug still raises), and hands out another sample in its place; the sample carries the path,
  so that :class:`UnreadableImagesHook` learns it in the main process whatever the dataloader's workers;
- the hook gathers the paths of all ranks after every iteration (one small all-reduce), logs each once, keeps them
  in the checkpoint's ``meta`` (a resumed run knows them) and stops every rank together, with one line, when more
  distinct images than the limit could not be read;
- in evaluation the sample is marked instead, and :class:`SkipUnreadableValLoop` / :class:`SkipUnreadableTestLoop`
  leave it out of the batch before the model sees it: it is absent from the metric (COCO's and mmseg's evaluators
  score the images they were given), and named in a warning.

``corrupt_images = dict(skip=False)`` in a config (or ``--cfg-options corrupt_images.skip=False``) keeps
the strict crash; ``corrupt_images.max_skipped=N`` sets the limit (default: 0.1% of the training set, at least 10).
"""
from __future__ import annotations

import copy
import math
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, is_main_process
from mmengine.hooks import Hook
from mmengine.runner import TestLoop, ValLoop

from ..registry import DATASETS, HOOKS, LOOPS

__all__ = ['SkipUnreadableImages', 'UnreadableImagesHook', 'SkipUnreadableValLoop', 'SkipUnreadableTestLoop',
           'UnreadableImagesError', 'skipping_unreadable_images', 'image_unreadable']

WRAPPER = 'mmdavit.SkipUnreadableImages'
HOOK = 'mmdavit.UnreadableImagesHook'
LOOP_TYPES = {'val_cfg': ('ValLoop', 'mmdavit.SkipUnreadableValLoop'),
              'test_cfg': ('TestLoop', 'mmdavit.SkipUnreadableTestLoop')}
# metainfo keys on the data samples: replaced in training / to be left out in evaluation
SKIPPED, UNREADABLE = 'skipped_images', 'unreadable_image'
# consecutive unreadable draws after which a dataset is taken for unreadable as a whole (wrong decoder, wrong files)
MAX_IN_A_ROW = 20


class UnreadableImagesError(RuntimeError):
    """More images could not be decoded than the run allows; ``paths``: those seen so far."""

    def __init__(self, message: str, paths: Sequence[str]):
        super().__init__(message)
        self.paths = list(paths)


def image_unreadable(path: Optional[str]) -> Optional[str]:
    """Why the image at ``path`` cannot be used, or None when it decodes (then a failure was not the image's)."""
    if not path:
        return None
    import mmcv
    from mmengine import fileio
    try:
        img = mmcv.imfrombytes(fileio.get(path))
    except FileNotFoundError:
        return 'missing'
    except Exception as e:  # noqa: BLE001  whatever the decoder raises on a bad file
        return f'cannot be decoded ({type(e).__name__})'
    return None if img is not None else 'cannot be decoded'


def _samples(data) -> list:
    """The data samples of one sample or a batch, flat (test-time augmentation nests them per augmentation)."""
    samples = data.get('data_samples') if isinstance(data, dict) else None
    out, stack = [], [samples]
    while stack:
        s = stack.pop()
        if isinstance(s, (list, tuple)):
            stack.extend(s)
        elif s is not None:
            out.append(s)
    return out


@DATASETS.register_module()
class SkipUnreadableImages:
    """Hands out another sample in place of one whose image cannot be decoded (training: a random one, as
    mmengine's own refetch; evaluation: the next one, marked to be left out). Everything else is the wrapped
    dataset's.

    Args:
        dataset (dict | Dataset): the dataset, or its config.
        max_in_a_row (int): unreadable draws in a row after which the dataset is taken for unreadable as a whole.
    """

    def __init__(self, dataset, max_in_a_row: int = MAX_IN_A_ROW):
        if isinstance(dataset, dict):
            from mmengine.registry import DATASETS as ROOT
            dataset = ROOT.build(dataset)
        self.dataset = dataset
        self.max_in_a_row = max_in_a_row

    def __getattr__(self, name):  # the wrapped dataset's attributes (cat_ids, METAINFO, ...); not during unpickling
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int):
        test_mode = getattr(self.dataset, 'test_mode', False)
        skipped: List[str] = []
        for tries in range(self.max_in_a_row + 1):
            try:
                data = self.dataset[idx]
            except Exception:
                path = self.dataset.get_data_info(idx).get('img_path')
                why = image_unreadable(path)
                if why is None:
                    raise
                if f'{path} ({why})' not in skipped:  # a random draw may meet the same image again
                    skipped.append(f'{path} ({why})')
                idx = (idx + 1) % len(self) if test_mode else int(np.random.randint(0, len(self)))
                continue
            if skipped:
                for sample in _samples(data):
                    sample.set_metainfo({UNREADABLE: skipped[0]} if test_mode else {SKIPPED: skipped})
            return data
        raise UnreadableImagesError(
            f'{tries + 1} images in a row could not be read, e.g. {skipped[0]}: check the image folder and that '
            'the files are images (corrupt_images.skip=False shows the first failure as it is)', skipped)


def _limit(max_skipped: Optional[int], dataset_size: int) -> int:
    return max_skipped if max_skipped is not None else max(10, math.ceil(0.001 * dataset_size))


@HOOKS.register_module()
class UnreadableImagesHook(Hook):
    """Counts the training images :class:`SkipUnreadableImages` replaced, on every rank alike: logs each once, keeps
    them in the checkpoint's ``meta['skipped_images']``, and stops the run past ``max_skipped`` distinct images.

    Args:
        max_skipped (int, optional): distinct unreadable images a run may skip; default 0.1% of the training set,
            at least 10.
    """
    priority = 'NORMAL'

    def __init__(self, max_skipped: Optional[int] = None):
        self.max_skipped = max_skipped
        self.skipped: List[str] = []
        self.limit = max_skipped

    def before_train(self, runner) -> None:
        self.limit = _limit(self.max_skipped, len(runner.train_dataloader.dataset))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        new = [p for s in _samples(data_batch) for p in s.metainfo.get(SKIPPED, [])]
        count = torch.tensor([len(new)], dtype=torch.int64)
        all_reduce(count)  # every rank learns together whether anything is to be gathered
        if int(count.item()) == 0:
            return
        seen = set(self.skipped)
        for path in (p for paths in all_gather_object(new) for p in paths):
            if path in seen:
                continue
            seen.add(path)
            self.skipped.append(path)
            if len(self.skipped) <= self.limit:
                runner.logger.warning(f'skipped an unreadable training image, another sample drawn in its place: '
                                      f'{path} ({len(self.skipped)} skipped so far; the run stops past {self.limit})')
        if len(self.skipped) > self.limit:
            again = ('train again with --resume' if osp.isfile(osp.join(runner.work_dir, 'last_checkpoint'))
                     else 'train again (no checkpoint was written yet)')
            raise UnreadableImagesError(
                f'{len(self.skipped)} training image(s) could not be read, more than the {self.limit} allowed '
                f'(corrupt_images.max_skipped), e.g. {self.skipped[0]}: replace or remove them (the log names each),'
                f' then {again}', self.skipped)

    def after_train_epoch(self, runner) -> None:
        if self.skipped and is_main_process():
            runner.logger.info(f'{len(self.skipped)} unreadable training image(s) skipped so far: '
                               f'{self.skipped[:5]}{" ..." if len(self.skipped) > 5 else ""}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[SKIPPED] = list(self.skipped)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.skipped = list((checkpoint.get('meta') or {}).get(SKIPPED) or [])


def _drop_unreadable(data_batch):
    """The batch without the samples marked unreadable (None when none is left), and their paths."""
    samples = data_batch['data_samples']
    tta = bool(samples) and isinstance(samples[0], (list, tuple))  # per augmentation, then per image
    first = samples[0] if tta else samples
    bad = [i for i, s in enumerate(first) if s.metainfo.get(UNREADABLE)]
    if not bad:
        return data_batch, []
    paths = [first[i].metainfo[UNREADABLE] for i in bad]
    keep = [i for i in range(len(first)) if i not in bad]
    if not keep:
        return None, paths

    def take(x):
        return x[keep] if isinstance(x, torch.Tensor) else [x[i] for i in keep]

    return {k: ([take(a) for a in v] if tta else take(v)) if isinstance(v, (list, tuple, torch.Tensor)) else v
            for k, v in data_batch.items()}, paths


class _LeavesOutUnreadable:
    """The evaluation loops' part: unreadable images out of each batch, named once the metric is computed."""

    def run(self) -> dict:
        self.unreadable: List[str] = []
        metrics = super().run()
        if self.unreadable:
            self.runner.logger.warning(
                f'{len(self.unreadable)} image(s) could not be read and are left out of the metric above: '
                f'{self.unreadable[:5]}{" ..." if len(self.unreadable) > 5 else ""}')
        return metrics

    def run_iter(self, idx, data_batch) -> None:
        data_batch, dropped = _drop_unreadable(data_batch)
        self.unreadable += [p for p in dropped if p not in self.unreadable]
        if data_batch is not None:
            super().run_iter(idx, data_batch)


@LOOPS.register_module()
class SkipUnreadableValLoop(_LeavesOutUnreadable, ValLoop):
    """mmengine's ValLoop, leaving out the images :class:`SkipUnreadableImages` marked unreadable."""


@LOOPS.register_module()
class SkipUnreadableTestLoop(_LeavesOutUnreadable, TestLoop):
    """mmengine's TestLoop, leaving out the images :class:`SkipUnreadableImages` marked unreadable."""


def _wrapped(dataloader):
    """A dataloader config whose dataset is wrapped in :class:`SkipUnreadableImages` (a copy; anything else as is)."""
    if not isinstance(dataloader, dict) or not isinstance(dataloader.get('dataset'), dict):
        return dataloader
    if dataloader['dataset'].get('type') == WRAPPER:
        return dataloader
    return dict(dataloader, dataset=dict(type=WRAPPER, dataset=dataloader['dataset']))


def _leaving_out(loop, key: str):
    """A val/test loop config as the loop that leaves marked images out (a copy), where it is mmengine's own."""
    plain, ours = LOOP_TYPES[key]
    if isinstance(loop, dict) and loop.get('type', plain) in (plain, f'mmengine.{plain}'):
        return dict(loop, type=ours)
    return loop


def skipping_unreadable_images(runner_cls, options: Optional[dict] = None):
    """``runner_cls`` building its dataloaders, evaluation loops and hooks so that an unreadable image costs a
    sample (module docstring), unless ``options`` (the config's ``corrupt_images``) say ``skip=False``.

    Done where the Runner builds them, not by rewriting the config: the config the Runner dumps into the work dir
    and keeps in each checkpoint's ``meta`` stays the one the user wrote, which mmdet's and mmseg's own tools and
    inferencers read back (``cfg.test_dataloader.dataset.pipeline``)."""
    options = dict(options or {})
    if not options.get('skip', True):
        return runner_cls

    class SkipsUnreadableImages(runner_cls):
        @staticmethod
        def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
            return runner_cls.build_dataloader(_wrapped(dataloader), seed=seed, diff_rank_seed=diff_rank_seed)

        def build_val_loop(self, loop):
            return super().build_val_loop(_leaving_out(loop, 'val_cfg'))

        def build_test_loop(self, loop):
            return super().build_test_loop(_leaving_out(loop, 'test_cfg'))

        def register_hooks(self, default_hooks=None, custom_hooks=None):
            # register_hooks, not register_custom_hooks: mmengine calls the latter only for a config that has some
            hook = dict(type=HOOK, max_skipped=options.get('max_skipped'))
            super().register_hooks(default_hooks, list(custom_hooks or []) + [hook])

    SkipsUnreadableImages.__name__ = SkipsUnreadableImages.__qualname__ = runner_cls.__name__
    return SkipsUnreadableImages

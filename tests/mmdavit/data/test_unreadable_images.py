"""mmdavit/data/unreadable_images.py: an image that cannot be decoded costs a sample, not the run; every rank counts the
same images and stops together; evaluation leaves the image out of the batch."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.structures import BaseDataElement

from mmdavit.data.unreadable_images import (SkipUnreadableImages, UnreadableImagesError, UnreadableImagesHook,
                                       _drop_unreadable, image_unreadable, skipping_unreadable_images)


class _Images:
    """A dataset of files that fails as mmcv's LoadImageFromFile does on a bad one (an assertion), or always
    (``bug``): a pipeline error that is not the image's."""
    test_mode = False
    metainfo = dict(classes=('a',))

    def __init__(self, paths, bug=False):
        self.paths, self.bug = paths, bug

    def __len__(self):
        return len(self.paths)

    def get_data_info(self, idx):
        return dict(img_path=self.paths[idx])

    def __getitem__(self, idx):
        import mmcv
        if self.bug:
            raise KeyError('gt_bboxes')
        img = mmcv.imread(self.paths[idx])
        assert img is not None, f'failed to load image: {self.paths[idx]}'
        return dict(inputs=torch.from_numpy(img), data_samples=BaseDataElement(metainfo=dict(idx=idx)))


@pytest.fixture
def images(tmp_path):
    import numpy as np
    from PIL import Image
    paths = []
    for i in range(4):
        p = tmp_path / f'{i}.jpg'
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    with open(paths[1], 'r+b') as f:  # a download cut short: the header survives, the data does not
        f.truncate(20)
    return paths


def test_the_image_is_what_is_judged(images, tmp_path):
    assert image_unreadable(images[0]) is None
    assert image_unreadable(images[1]).startswith('cannot be decoded')
    assert image_unreadable(str(tmp_path / 'gone.jpg')) == 'missing'


def test_training_gets_another_sample_that_names_the_one_it_replaces(images):
    ds = SkipUnreadableImages(_Images(images))
    assert ds[0]['data_samples'].metainfo['idx'] == 0
    data = ds[1]
    assert data['data_samples'].metainfo['idx'] != 1
    assert data['data_samples'].metainfo['skipped_images'] == [f'{images[1]} (cannot be decoded)']
    assert len(ds) == 4 and ds.metainfo['classes'] == ('a',) and ds.get_data_info(2)['img_path'] == images[2]


def test_evaluation_marks_the_sample_to_be_left_out(images):
    inner = _Images(images)
    inner.test_mode = True
    data = SkipUnreadableImages(inner)[1]
    assert data['data_samples'].metainfo['unreadable_image'].startswith(images[1])


def test_a_failure_that_is_not_the_image_s_still_raises(images):
    with pytest.raises(KeyError, match='gt_bboxes'):
        SkipUnreadableImages(_Images(images, bug=True))[0]


def test_a_dataset_of_unreadable_files_stops_with_one_line(tmp_path):
    paths = [str(tmp_path / f'{i}.jpg') for i in range(3)]
    for p in paths:
        open(p, 'wb').write(b'not an image')
    with pytest.raises(UnreadableImagesError, match='6 images in a row could not be read') as e:
        SkipUnreadableImages(_Images(paths), max_in_a_row=5)[0]
    assert len(str(e.value).splitlines()) == 1


def _sample(**meta):
    return BaseDataElement(metainfo=meta)


def test_marked_samples_leave_lists_stacked_tensors_and_tta_batches():
    batch = dict(inputs=[torch.zeros(1), torch.ones(1)], data_samples=[_sample(unreadable_image='x.jpg'), _sample()])
    kept, dropped = _drop_unreadable(batch)
    assert dropped == ['x.jpg'] and kept['inputs'][0].item() == 1 and len(kept['data_samples']) == 1
    stacked = dict(inputs=torch.arange(3), data_samples=[_sample(), _sample(unreadable_image='y'), _sample()])
    kept, _ = _drop_unreadable(stacked)
    assert kept['inputs'].tolist() == [0, 2]
    # test-time augmentation: per augmentation, then per image
    tta = dict(inputs=[[torch.zeros(1), torch.ones(1)]] * 2,
               data_samples=[[_sample(), _sample(unreadable_image='z')]] * 2)
    kept, dropped = _drop_unreadable(tta)
    assert dropped == ['z'] and [len(a) for a in kept['data_samples']] == [1, 1] and kept['inputs'][1][0].item() == 0
    assert _drop_unreadable(dict(inputs=[1], data_samples=[_sample(unreadable_image='w')]))[0] is None
    assert _drop_unreadable(batch | dict(data_samples=[_sample(), _sample()]))[1] == []


class _Runner:
    work_dir = '/nonexistent'

    class logger:
        lines = []

        @classmethod
        def warning(cls, msg):
            cls.lines.append(msg)

        info = warning


def _two_ranks(rank, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    hook = UnreadableImagesHook(max_skipped=2)
    hook.limit = 2
    runner = _Runner()
    seen = []
    # rank 0 meets a.jpg at iteration 0, rank 1 meets b.jpg at iteration 1 and a.jpg again at 2, then c.jpg
    metas = {0: [['a.jpg'], [], [], []], 1: [[], ['b.jpg'], ['a.jpg'], ['c.jpg']]}[rank]
    stopped = None
    for it, skipped in enumerate(metas):
        batch = dict(data_samples=[_sample(skipped_images=skipped) if skipped else _sample()])
        try:
            hook.after_train_iter(runner, it, batch)
        except UnreadableImagesError as e:
            stopped = it
            break
        seen.append(list(hook.skipped))
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    torch.save(dict(seen=seen, stopped=stopped, meta=ckpt['meta']), f'{out}/{rank}.pt')
    dist.destroy_process_group()


def test_every_rank_counts_the_same_images_and_stops_at_the_same_iteration(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.start_processes(_two_ranks, args=(port, str(tmp_path)), nprocs=2, start_method='fork')  # no import by name
    r0, r1 = (torch.load(tmp_path / f'{r}.pt') for r in (0, 1))
    assert r0 == r1
    assert r0['seen'] == [['a.jpg'], ['a.jpg', 'b.jpg'], ['a.jpg', 'b.jpg']]  # a.jpg counted once
    assert r0['stopped'] == 3  # the third distinct image is past the limit of 2, on both ranks
    assert r0['meta']['skipped_images'] == ['a.jpg', 'b.jpg', 'c.jpg']


def test_a_resumed_run_knows_the_images_skipped_before():
    hook = UnreadableImagesHook()
    hook.after_load_checkpoint(None, dict(meta=dict(skipped_images=['a.jpg'])))
    assert hook.skipped == ['a.jpg']


class _Base:
    """What the tools' Runner class is asked for: its parts echoed back."""
    hooks = None

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        return dataloader

    def build_val_loop(self, loop):
        return loop

    def build_test_loop(self, loop):
        return loop

    def register_hooks(self, default_hooks=None, custom_hooks=None):
        self.hooks = custom_hooks


def test_the_runner_builds_the_skipping_parts_and_leaves_the_config_as_written():
    runner = skipping_unreadable_images(_Base, dict(max_skipped=3))()
    loader = dict(batch_size=2, dataset=dict(type='CocoDataset', ann_file='a.json'))
    built = runner.build_dataloader(loader)
    assert built['dataset'] == dict(type='mmdavit.SkipUnreadableImages', dataset=loader['dataset'])
    assert loader['dataset']['type'] == 'CocoDataset'  # the config's own dict is untouched
    assert runner.build_dataloader(built) == built  # wrapped once
    assert runner.build_val_loop(dict(type='ValLoop'))['type'] == 'mmdavit.SkipUnreadableValLoop'
    assert runner.build_test_loop(dict())['type'] == 'mmdavit.SkipUnreadableTestLoop'
    assert runner.build_val_loop(dict(type='TeacherStudentValLoop'))['type'] == 'TeacherStudentValLoop'
    runner.register_hooks(None, None)  # a config without custom_hooks: mmengine passes None
    assert runner.hooks == [dict(type='mmdavit.UnreadableImagesHook', max_skipped=3)]
    runner.register_hooks(None, [dict(type='H')])
    assert runner.hooks == [dict(type='H'), dict(type='mmdavit.UnreadableImagesHook', max_skipped=3)]
    assert skipping_unreadable_images(_Base, dict(skip=False)) is _Base

"""mmdavit/data/check.py: a config's class names, listed images, boxes, label values and num_classes against the
dataset's files."""
import json

import numpy as np
import pytest
from PIL import Image

from mmdavit.data.check import (DataCheckError, check_coco_classes, check_coco_file, check_num_classes,
                                check_seg_maps)


def _ann(tmp_path, names):
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=[], annotations=[],
                                    categories=[dict(id=10 + i, name=n) for i, n in enumerate(names)])))
    return str(path)


def test_a_typo_is_named_with_the_nearest_category(tmp_path):
    ann = _ann(tmp_path, ['apple', 'cherry', 'banana'])
    with pytest.raises(DataCheckError, match=r"class 'cheery' .* not a category .*did you mean 'cherry'") as e:
        check_coco_classes(ann, ('apple', 'cheery', 'banana'))
    assert e.value.names == ['cheery'] and e.value.path == ann
    assert len(str(e.value).splitlines()) == 1


def test_matching_names_in_any_order_and_a_subset(tmp_path):
    ann = _ann(tmp_path, ['apple', 'cherry', 'banana'])
    assert check_coco_classes(ann, ('banana', 'apple', 'cherry')) == []
    assert check_coco_classes(ann, ('cherry',)) == ['apple', 'banana']  # the left-out ones, for the tool's note


def test_a_file_without_categories(tmp_path):
    path = tmp_path / 'x.json'
    path.write_text('{"images": []}')
    with pytest.raises(DataCheckError, match='not a COCO annotation file with categories'):
        check_coco_classes(str(path), ('a',))


def _coco(tmp_path, images, annotations, names=('apple', 'pear')):
    """A COCO file with 100x80 images ``images`` (file names) and boxes ``annotations`` (image index, bbox)."""
    (tmp_path / 'img').mkdir(exist_ok=True)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f, width=100, height=80) for i, f in enumerate(images)],
        annotations=[dict(id=k, image_id=i, category_id=7, bbox=list(b), area=float(b[2] * b[3]), iscrowd=0)
                     for k, (i, b) in enumerate(annotations)],
        categories=[dict(id=7 + 35 * k, name=n) for k, n in enumerate(names)])))
    return str(path), str(tmp_path / 'img')


def test_boxes_are_counted_by_what_mmdet_does_with_them(tmp_path):
    ann, img = _coco(tmp_path, ['a.jpg', 'b.jpg', 'c.jpg'], [
        (0, (10, 10, 20, 20)),      # inside
        (0, (90, 70, 20, 20)),      # partly outside: kept, clipped by Resize
        (1, (120, 10, 5, 5)),       # entirely outside: dropped by CocoDataset
        (1, (10, 10, 0.5, 30)),     # empty: dropped
    ])
    for name in ('a.jpg', 'b.jpg', 'c.jpg'):
        (tmp_path / 'img' / name).write_bytes(b'')
    report = check_coco_file(ann, img, ('apple', 'pear'))
    assert (report.images, report.boxes, report.partly_outside, report.outside, report.empty) == (3, 4, 1, 1, 1)
    assert report.images_without_boxes == 2  # b's boxes are both dropped; c has none
    notes = report.notes()
    assert any('1 of 4 boxes' in n and 'clipped' in n for n in notes)
    assert any('2 of 4 boxes' in n and '1 entirely outside' in n and '1 empty' in n for n in notes)
    assert all(len(n.splitlines()) == 1 for n in notes)


def test_images_listed_but_missing_are_refused_with_their_names(tmp_path):
    ann, img = _coco(tmp_path, ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg'], [(0, (1, 1, 5, 5))])
    (tmp_path / 'img' / 'a.jpg').write_bytes(b'')
    with pytest.raises(DataCheckError, match=r'4 of the 5 images listed in .* are not in .*img: b.jpg, c.jpg, d.jpg '
                                             r'and 1 more') as e:
        check_coco_file(ann, img, ('apple',))
    assert e.value.names == ['b.jpg', 'c.jpg', 'd.jpg', 'e.jpg']


def test_a_class_missing_from_the_file_is_refused_by_the_whole_check_too(tmp_path):
    ann, img = _coco(tmp_path, [], [])
    with pytest.raises(DataCheckError, match="'peer' .*did you mean 'pear'"):
        check_coco_file(ann, img, ('apple', 'peer'))


def test_the_check_costs_about_what_loading_the_file_costs(tmp_path):
    """COCO train2017 in small (4k images, 28k boxes): the check must stay within a small factor of json.load,
    which mmdet pays anyway (docs/custom_dataset.md gives the whole file's figure)."""
    import time
    n_img, per = 4_000, 7
    images = [dict(id=i, file_name=f'{i:012d}.jpg', width=640, height=480) for i in range(n_img)]
    anns = [dict(id=k, image_id=k // per, category_id=1 + k % 80, bbox=[k % 640, k % 480, 30.5, 40.5], area=1235.25,
                  iscrowd=0) for k in range(n_img * per)]
    path = tmp_path / 'big.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns,
                                    categories=[dict(id=c + 1, name=f'c{c}') for c in range(80)])))
    del images, anns
    # CPU time of this process: the suite shares its cores with other tests
    start = time.process_time()
    json.loads(path.read_text())
    load_s = time.process_time() - start
    start = time.process_time()
    report = check_coco_file(str(path), None, tuple(f'c{c}' for c in range(80)))
    check_s = time.process_time() - start
    assert report.boxes == n_img * per and report.partly_outside > 0
    assert check_s < 2.5 * load_s + 1.0, (check_s, load_s)


def _seg(tmp_path, maps):
    img, seg = tmp_path / 'img', tmp_path / 'seg'
    img.mkdir(), seg.mkdir()
    for name, values in maps.items():
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img / f'{name}.jpg')
        if values is not None:
            Image.fromarray(np.array(values, np.uint8).reshape(1, -1).repeat(2, 0)).save(seg / f'{name}.png')
    return str(img), str(seg)


def test_label_values_fit_the_head_with_reduce_zero_label_either_way(tmp_path):
    img, seg = _seg(tmp_path, {'a': [0, 1, 2, 3], 'b': [3, 255]})
    assert check_seg_maps(img, seg, '.jpg', '.png', 3, True).values == [0, 1, 2, 3, 255]  # 0 ignored, 1..3 classes
    assert check_seg_maps(img, seg, '.jpg', '.png', 4, False).read == 2                   # 0..3 classes
    with pytest.raises(DataCheckError, match=r'label value 3 .* num_classes=3 with reduce_zero_label=False .*set '
                                             r'reduce_zero_label=True') as e:
        check_seg_maps(img, seg, '.jpg', '.png', 3, False)  # labels 1..3 with 0 as "no label": the ADE convention
    assert e.value.names == [3]
    with pytest.raises(DataCheckError, match=r'label value 3 .* more classes than the 2'):
        check_seg_maps(img, seg, '.jpg', '.png', 2, True)


def test_an_image_without_its_label_map_is_named(tmp_path):
    img, seg = _seg(tmp_path, {'a': [1], 'b': None})
    with pytest.raises(DataCheckError, match=r'1 of the 2 images .* no label map .*: b.png'):
        check_seg_maps(img, seg, '.jpg', '.png', 3, True)


def test_only_a_spread_of_a_large_set_of_maps_is_read(tmp_path):
    img, seg = _seg(tmp_path, {f'{i:03d}': [1] for i in range(12)})
    report = check_seg_maps(img, seg, '.jpg', '.png', 3, True, read=5)
    assert (report.maps, report.read) == (12, 5)


def test_num_classes_against_the_class_names():
    check_num_classes(('a', 'b'), {'model.decode_head.num_classes': 2}, 'x')
    with pytest.raises(DataCheckError, match=r'model.roi_head.mask_head.num_classes=3 but x names 2 classes .*set '
                                             r'model.roi_head.mask_head.num_classes=2'):
        check_num_classes(('a', 'b'), {'model.roi_head.bbox_head.num_classes': 2,
                                       'model.roi_head.mask_head.num_classes': 3}, 'x')


def test_maps_numbered_from_zero_under_reduce_zero_label_get_a_note(tmp_path):
    """The newcomer's case: labels 0..2 with 255 as "no label", the config left at ADE's reduce_zero_label=True:
    it trains, with the first class ignored and the others named one off."""
    img, seg = _seg(tmp_path, {'a': [0, 1, 2], 'b': [2, 255]})
    report = check_seg_maps(img, seg, '.jpg', '.png', 3, True)
    assert report.zero_is_a_class
    (note,) = report.notes(3)
    assert 'If 0 is your first class (values 0..2, 255 = no label), set reduce_zero_label=False' in note
    ade = tmp_path / 'ade'
    ade.mkdir()
    img, seg = _seg(ade, {'a': [0, 1, 3], 'b': [2, 3]})  # ADE's convention: 0 unlabelled, 1..3 the classes
    assert not check_seg_maps(img, seg, '.jpg', '.png', 3, True).zero_is_a_class

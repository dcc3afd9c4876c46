"""mmdavit/data_check.py: a detection config's class names against its COCO annotation file."""
import json

import pytest

from mmdavit.data_check import DataCheckError, check_coco_classes


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

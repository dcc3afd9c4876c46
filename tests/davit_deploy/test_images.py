"""davit_deploy.images: which files an IMAGE_OR_DIR argument gives, and refusals that carry the path."""
import cv2
import numpy as np
import pytest

from davit_deploy import ImageError
from davit_deploy.images import list_images, read_image


def test_a_folder_gives_its_images_in_name_order(tmp_path):
    img = np.full((5, 7, 3), 200, np.uint8)
    for name in ('b.png', 'a.JPG'):
        cv2.imwrite(str(tmp_path / name.lower()), img)
    (tmp_path / 'a.JPG').write_bytes((tmp_path / 'a.jpg').read_bytes())
    (tmp_path / 'a.jpg').unlink()
    (tmp_path / 'notes.txt').write_text('not an image')
    (tmp_path / 'sub.png').mkdir()
    assert list_images(str(tmp_path)) == [str(tmp_path / 'a.JPG'), str(tmp_path / 'b.png')]
    assert list_images(str(tmp_path / 'b.png')) == [str(tmp_path / 'b.png')]
    assert read_image(str(tmp_path / 'b.png')).shape == (5, 7, 3)


@pytest.mark.parametrize('case,problem', [('missing', 'not found'), ('empty', 'no images'),
                                          ('garbage', 'undecodable')])
def test_refusals_carry_the_path(tmp_path, case, problem):
    path = tmp_path / {'missing': 'nope.jpg', 'empty': 'empty', 'garbage': 'x.jpg'}[case]
    if case == 'empty':
        path.mkdir()
    if case == 'garbage':
        path.write_text('not an image')
    with pytest.raises(ImageError) as e:
        read_image(str(path)) if case == 'garbage' else list_images(str(path))
    assert e.value.problem == problem and e.value.path == str(path) and repr(str(path)) in str(e.value)

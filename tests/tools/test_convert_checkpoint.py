"""tools/convert_checkpoint.py with Florence-2 as transformers ships it: a save_pretrained folder in, and out again
in transformers' own keys."""
import pytest
import torch

from davit_backbone import convert_state_dict, load_pretrained, to_florence2
from helpers import (FLORENCE2_TOY_ARCH, FLORENCE2_TOY_TOWER, assert_tower, dense_davit, florence2_layouts,
                     florence2_whole_model, python_tool, reference)



@pytest.fixture(scope='module')
def florence2(tmp_path_factory):
    return florence2_layouts(tmp_path_factory.mktemp('florence2'))


def _tower():
    tower = reference('transformers.models.florence2.modeling_florence2').Florence2VisionBackbone
    return tower(reference('transformers').Florence2VisionConfig(**FLORENCE2_TOY_TOWER)).eval()


def test_convert_tool_reads_a_folder_and_writes_what_transformers_loads_strictly(florence2, tmp_path):
    """A tower fine-tuned here goes back into Florence-2: --to florence2 gives transformers' own keys, which its
    Florence2VisionBackbone takes with strict=True; our output norms are left out and listed."""
    from safetensors.torch import load_file as read_safetensors
    tower, paths = florence2
    r = python_tool('tools/convert_checkpoint.py', paths['folder'], str(tmp_path / 'ours.pth'))
    assert r.returncode == 0, r.stderr
    assert '(florence2-transformers,' in r.stdout
    model = dense_davit(FLORENCE2_TOY_ARCH)  # a detection backbone: norm0..3 beside the tower
    load_pretrained(model, str(tmp_path / 'ours.pth'))
    assert_tower(model.state_dict(), tower)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}}, tmp_path / 'det.pth')
    r = python_tool('tools/convert_checkpoint.py', str(tmp_path / 'det.pth'), str(tmp_path / 'tower.safetensors'),
                    '--to', 'florence2')
    assert r.returncode == 0, r.stderr
    assert "left out" in r.stdout and "'norm0'" in r.stdout
    back = _tower()
    back.load_state_dict(read_safetensors(str(tmp_path / 'tower.safetensors')), strict=True)
    whole = florence2_whole_model(seed=1)
    whole.model.vision_tower.load_state_dict(read_safetensors(str(tmp_path / 'tower.safetensors')), strict=True)
    for k, v in back.state_dict().items():
        assert torch.equal(whole.model.vision_tower.state_dict()[k], v), k
    assert convert_state_dict(back.state_dict()).keys() == tower.keys()
    sd, left_out = to_florence2(model.state_dict())
    assert sorted(left_out) == sorted(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))

"""davit_backbone/loading.py: reading a file (weights only) with errors that name it."""
import pytest
import torch

from davit_backbone import load_file


def test_truncated_and_missing_files_name_the_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(1000)}, good)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(RuntimeError, match='cut.pth'):
        load_file(str(cut))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_file(str(tmp_path / 'nope.pth'))

"""mmdavit/checkpoints/reader.py: one read per checkpoint, one place for ``pretrained``, the early check whatever key a
config uses, and the fit check after a non-strict load."""
import os

import pytest
import torch

from davit_backbone import DaViT
from helpers import ROOT, build_from_config, to_timm
from mmdavit.checkpoints.reader import (Checkpoint, CheckpointError, check_pretrained, map_pretrained,
                                        pretrained_init_cfg)

CLS = 'configs/toy/davit-t_toy-imagefolder.py'


@pytest.fixture
def loads(monkeypatch):
    """Every torch.load of the test, as (path, mmap)."""
    seen, real = [], torch.load

    def counting(f, *args, **kwargs):
        seen.append((os.path.basename(str(f)), kwargs.get('mmap', False)))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', counting)
    return seen


def test_map_pretrained_every_spelling():
    pre = dict(type='Pretrained', checkpoint='a.pth')
    cfg = dict(pretrained='a.pth', backbone=dict(type='DaViT', init_cfg=dict(type='Pretrained', checkpoint='old.pth')))
    assert map_pretrained(cfg) == 'a.pth' and cfg == dict(backbone=dict(type='DaViT', init_cfg=pre))  # mmdet 2.x
    cfg = dict(backbone=dict(type='mmdavit.DaViT', pretrained='a.pth'))  # the release's and Florence-2's configs
    assert map_pretrained(cfg) == 'a.pth' and cfg == dict(backbone=dict(type='mmdavit.DaViT', init_cfg=pre))
    cfg = dict(backbone=dict(type='DaViT', init_cfg=pre))
    assert map_pretrained(cfg) == 'a.pth'
    from mmdavit import DaViT as Adapter
    cfg = dict(backbone=dict(type=Adapter, pretrained='a.pth'))  # a config may name the class
    assert map_pretrained(cfg) == 'a.pth' and cfg['backbone']['init_cfg'] == pre
    cfg = dict(backbone=dict(type='ResNet', pretrained='r.pth'))  # another backbone reads its own key
    assert map_pretrained(cfg) is None and cfg == dict(backbone=dict(type='ResNet', pretrained='r.pth'))
    with pytest.raises(ValueError, match='either pretrained or init_cfg'):
        map_pretrained(dict(backbone=dict(type='DaViT', pretrained='a.pth', init_cfg=pre)))
    # the adapter's own argument goes through the same function
    assert pretrained_init_cfg('a.pth') == pre and pretrained_init_cfg(None, pre) == pre


def test_early_check_leaves_tensors_on_disk_and_names_the_file(tmp_path, loads):
    path = tmp_path / 'timm.pth'
    torch.save(to_timm(DaViT('tiny').state_dict()), path)
    assert check_pretrained(dict(backbone=dict(type='DaViT', pretrained=str(path)))) == 'timm'
    assert loads == [('timm.pth', True)]
    torch.save({'conv1.weight': torch.ones(1)}, tmp_path / 'resnet.pth')
    for name, says in [('resnet.pth', 'not a DaViT checkpoint'), ('nope.pth', 'checkpoint file not found')]:
        with pytest.raises(CheckpointError, match=says) as err:
            check_pretrained(dict(backbone=dict(type='DaViT', pretrained=str(tmp_path / name))))
        assert name in str(err.value) and '\n' not in str(err.value)


def test_one_read_one_load_and_the_fit_check(tmp_path, loads):
    """A bare timm classifier into the toy classifier: read once, converted by the tools' gate with the model in view
    (Checkpoint.for_model), the fit check then uses the conversion already made; a checkpoint of another model is
    refused."""
    cfg, model = build_from_config(CLS)
    ref = DaViT('tiny', num_classes=3)
    torch.save({'model': to_timm(ref.state_dict())}, tmp_path / 'bare.pth')
    ckpt = Checkpoint(str(tmp_path / 'bare.pth'))
    ckpt.load_into(model)
    assert 'classifier' in ckpt.check_fits(model, 'mmpretrain')
    assert loads == [('bare.pth', False)]
    assert torch.equal(model.head.fc.weight, ref.head.fc.weight)
    assert torch.equal(model.backbone.stem.conv.weight, ref.stem.conv.weight)
    _, seg = build_from_config('configs/toy/upernet_davit-t_toy-ade.py')
    torch.save({'state_dict': seg.state_dict()}, tmp_path / 'seg.pth')
    other = Checkpoint(str(tmp_path / 'seg.pth'))
    other.load_into(model)  # non-strict, as the task repos load: the backbone fits, the head stays
    with pytest.raises(CheckpointError, match='another model'):
        other.check_fits(model, 'mmpretrain')



def test_resume_check_reads_through_the_gate_memory_mapped(tmp_path, loads):
    """--resume looks at meta only: the one gate, memory-mapped, so mmengine's own read is the file's only whole
    read; a broken file is the gate's one wording."""
    from mmdavit.training.resume import ResumeError, check_resumable
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'epoch': 1, 'iter': 2}}, tmp_path / 'epoch_1.pth')
    assert check_resumable(str(tmp_path / 'epoch_1.pth')) == (1, 2)
    assert loads == [('epoch_1.pth', True)]
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'epoch_1.pth').read_bytes()[:100])
    with pytest.raises(ResumeError, match='cut.pth is incomplete or not a checkpoint'):
        check_resumable(str(tmp_path / 'cut.pth'))

"""The weights-only allow-list: mmengine checkpoints load, nothing executable does, and it holds inside the readers
only."""
import numpy as np
import pytest
import torch

from mmdavit.checkpoints.allow_list import load_checkpoint_file, mmengine_checkpoint_globals


class _GetattrOnStr:
    def __reduce__(self):
        return getattr, ('text', 'upper')  # a pickle asking the loader for an arbitrary attribute


def test_numpy_payloads_load_weights_only(tmp_path):
    path = tmp_path / 'np.pth'
    torch.save({'meta': {'seed': np.int64(3), 'hist': np.arange(4.0)}, 'w': torch.ones(2)}, path)
    with mmengine_checkpoint_globals():
        ck = torch.load(path)  # torch's default is weights_only=True
    assert ck['meta']['seed'] == 3 and ck['meta']['hist'].sum() == 6
    with pytest.raises(Exception, match='numpy'):  # outside the reader torch's own allow-list holds
        torch.load(path)


def test_building_a_model_changes_nothing_outside_it():
    """No module-registration hook, no allow-list installed: building the adapter (and the plain model) leaves the
    process as it found it."""
    from torch.nn.modules import module as torch_module
    before = (dict(torch_module._global_module_registration_hooks), list(torch.serialization.get_safe_globals()))
    import mmdavit
    mmdavit.DaViT(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]))
    after = (dict(torch_module._global_module_registration_hooks), list(torch.serialization.get_safe_globals()))
    assert after == before


def test_a_numpy_1_checkpoint_loads_under_numpy_2(tmp_path):
    """numpy 1 pickles arrays as numpy.core.multiarray._reconstruct; numpy 2 keeps that name as an alias of
    numpy._core but its function says numpy._core, which torch's allow-list used to match against. The file is
    written here and given numpy 1's names (a no-op under numpy 1), in torch's legacy format, one plain pickle."""
    path = tmp_path / 'numpy1.pth'
    torch.save({'meta': {'array': np.arange(3.0), 'scalar': np.float64(2.5)}}, path,
               _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes().replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    assert b'numpy.core.multiarray' in path.read_bytes()
    meta = load_checkpoint_file(str(path))['meta']
    assert np.array_equal(meta['array'], np.arange(3.0)) and meta['scalar'] == 2.5


def test_history_buffer_loads_and_other_getattr_is_refused(tmp_path):
    from mmengine.logging import MessageHub
    hub = MessageHub('t')
    hub.update_scalar('train/loss', 1.5)
    hub.get_scalar('train/loss').min()  # populates the statistics that pickle as getattr(HistoryBuffer, 'min')
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict()}, path)
    assert load_checkpoint_file(str(path))['message_hub']['log_scalars']['train/loss'].min() == 1.5
    evil = tmp_path / 'evil.pth'
    torch.save({'x': _GetattrOnStr()}, evil)
    with pytest.raises(RuntimeError, match='refused'):
        load_checkpoint_file(str(evil))

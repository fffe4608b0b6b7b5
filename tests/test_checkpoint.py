"""i2ckd_mm.checkpoint: MMEngine checkpoints load with weights_only=True and
the MMEngine types; a file that would run code when unpickled is refused by
every loader (MMEngine's functions, the Runner, Pretrained inits, the
teacher) with an error naming the file and the opt-in, and its payload never
runs; opting in for that one file works.

The tools (tools/test.py, tools/train.py --resume, tools/export_student.py)
are covered in tests/test_tools/test_checkpoint_tools.py.
"""
import os
import os.path as osp
import pickle
from collections import Counter

import i2ckd_mm  # noqa: F401  (compat shims before mmengine loaders)
import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModule
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)
from torch import nn

from i2ckd_mm import checkpoint as ckpt_mod
from i2ckd_mm.checkpoint import (UntrustedCheckpointError,
                                 load_checkpoint_file, mmengine_safe_globals,
                                 mmengine_types_allowed, trust_checkpoint)


class _Payload:
    """Unpickling this writes ``marker``: stands for any code in a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def write_payload_ckpt(path, marker, state_dict=None):
    """A checkpoint whose full unpickling creates ``marker``."""
    torch.save(
        dict(state_dict=state_dict or dict(w=torch.ones(2)),
             meta=dict(x=_Payload(str(marker)))), str(path))
    return str(path)


@pytest.fixture
def payload(tmp_path):
    marker = tmp_path / 'PAYLOAD_RAN'
    path = write_payload_ckpt(tmp_path / 'payload.pth', marker)
    yield dict(path=path, marker=marker)


@pytest.fixture(autouse=True)
def _no_trust_leak(monkeypatch):
    """Files trusted in a test stay trusted only in that test."""
    monkeypatch.setattr(ckpt_mod, '_TRUSTED', set())


def assert_refused(excinfo, path, opt_in='--trust-checkpoint'):
    msg = str(excinfo.value)
    assert path in msg and opt_in in msg, msg
    assert 'refusing to unpickle' in msg


# ----------------------------------------------- MMEngine-written checkpoints
@pytest.fixture
def mmengine_like_ckpt(tmp_path):
    """What MMEngine's Runner and optimizers save beyond tensors: message hub
    buffers, numpy scalars/arrays/dtypes, a MultiStepLR milestone Counter,
    SGD state."""
    hist = HistoryBuffer()
    for v in (0.5, 0.25):
        hist.update(v)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5])
    ckpt = dict(
        meta=dict(epoch=1, iter=np.int64(7), seed=np.float64(0.5),
                  arr=np.arange(3, dtype=np.float32),
                  dtype=np.dtype('int16')),
        state_dict=model.state_dict(),
        optimizer=opt.state_dict(),
        param_schedulers=[sched.state_dict()],
        message_hub=dict(log_scalars={'train/loss': hist}),
    )
    assert isinstance(sched.state_dict()['milestones'], Counter)
    path = str(tmp_path / 'iter_7.pth')
    torch.save(ckpt, path)
    return path


def test_mmengine_checkpoint_needs_more_than_torchs_default(
        mmengine_like_ckpt):
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy'):
        torch.load(mmengine_like_ckpt, weights_only=True)


def test_mmengine_checkpoint_loads_with_weights_only(mmengine_like_ckpt,
                                                     monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    ckpt = _load_checkpoint(mmengine_like_ckpt, map_location='cpu')
    assert calls == [True]
    hist = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(hist, HistoryBuffer) and hist.mean() == 0.375
    assert hist.statistics('max') == 0.5
    assert ckpt['meta']['iter'] == 7 and isinstance(ckpt['meta']['iter'],
                                                     np.int64)
    np.testing.assert_array_equal(ckpt['meta']['arr'], [0., 1., 2.])
    assert ckpt['meta']['dtype'] == np.dtype('int16')
    assert ckpt['param_schedulers'][0]['milestones'] == Counter([3, 5])
    assert ckpt['optimizer']['state'][0]['momentum_buffer'].shape == (2, 2)


def test_numpy_1_names_load_too(tmp_path):
    """Files written under numpy 1 name numpy.core.multiarray; numpy 2
    files name numpy._core.multiarray. Both are allowed."""
    legacy = tmp_path / 'np.pth'  # legacy format: the pickle is inline
    torch.save(dict(a=np.arange(2)), str(legacy),
               _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    other = (b'numpy._core.multiarray' if b'numpy.core.multiarray' in data
             else b'numpy.core.multiarray')
    this = (b'numpy.core.multiarray' if other == b'numpy._core.multiarray'
            else b'numpy._core.multiarray')
    assert this in data
    path = tmp_path / 'np_other.pkl'
    path.write_bytes(data.replace(this, other))
    with mmengine_types_allowed():
        out = torch.load(str(path), weights_only=True)
    np.testing.assert_array_equal(out['a'], [0, 1])


def test_types_are_allowed_only_while_loading(mmengine_like_ckpt):
    before = torch.serialization.get_safe_globals()
    load_checkpoint_file(mmengine_like_ckpt)
    after = torch.serialization.get_safe_globals()
    added = [g for g in after if g not in before]
    # none of the loader's entries stays allowed; torch itself may add its
    # own types meanwhile (a lazy import of e.g. torch.distributed.tensor
    # registers them, whichever test imported it first)
    ours = mmengine_safe_globals()
    assert not [g for g in added if g in ours]
    assert all((g[0] if isinstance(g, tuple) else g).__module__.startswith(
        'torch.') for g in added), added
    assert HistoryBuffer not in after
    with pytest.raises(pickle.UnpicklingError):
        torch.load(mmengine_like_ckpt, weights_only=True)


def test_a_users_own_allowlist_entry_survives(mmengine_like_ckpt):
    torch.serialization.add_safe_globals([Counter])
    try:
        load_checkpoint_file(mmengine_like_ckpt)
        assert Counter in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()


def test_allowlist_is_exactly_the_mmengine_types():
    names = set()
    for entry in mmengine_safe_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    assert 'builtins.getattr' in names  # the restricted stand-in
    assert not any(n.startswith(('os.', 'posix.', 'subprocess.',
                                 'builtins.eval', 'builtins.exec'))
                   for n in names)
    getattr_entry = dict((n, f) for f, n in (
        e for e in mmengine_safe_globals() if isinstance(e, tuple)))
    assert getattr_entry['builtins.getattr'] is not getattr
    assert type(np.dtype(object)) not in mmengine_safe_globals()


# --------------------------------------------------- restricted reconstruction
class _GetattrOf:
    """Pickles as builtins.getattr(obj, name), like a method reference."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


@pytest.mark.parametrize('obj,name', [(HistoryBuffer, 'update'),
                                      (HistoryBuffer, '__init__'),
                                      (np.ndarray, 'tofile')])
def test_getattr_only_reaches_history_buffer_statistics(tmp_path, obj, name):
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(m=_GetattrOf(obj, name)), path)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_checkpoint_file(path)
    assert 'getattr(' in str(err.value) and repr(name) in str(err.value)


def test_history_buffer_statistics_cannot_be_replaced(tmp_path):
    hist = HistoryBuffer([1.0], [1])
    table = HistoryBuffer._statistics_methods
    saved = dict(table)
    table['mean'] = Counter  # an allowed global standing in for "not mean"
    try:
        torch.save(dict(h=hist), str(tmp_path / 'h.pth'))
    finally:
        table.clear()
        table.update(saved)
    with pytest.raises(UntrustedCheckpointError, match='statistics'):
        load_checkpoint_file(str(tmp_path / 'h.pth'))
    assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.mean
    assert HistoryBuffer([1.0, 3.0], [1, 1]).mean() == 2.0


# ---------------------------------------------- payload refused everywhere
def test_payload_refused_by_checkpoint_loader(payload):
    for load in (lambda p: CheckpointLoader.load_checkpoint(p),
                 lambda p: _load_checkpoint(p, map_location='cpu'),
                 lambda p: load_checkpoint(nn.Linear(2, 2), p)):
        with pytest.raises(UntrustedCheckpointError) as err:
            load(payload['path'])
        assert_refused(err, payload['path'])
    assert not payload['marker'].exists()


def test_payload_refused_by_load_checkpoint_file(payload):
    with pytest.raises(UntrustedCheckpointError,
                       match='GLOBAL.*open|builtins') as err:
        load_checkpoint_file(payload['path'])
    assert_refused(err, payload['path'])
    assert not payload['marker'].exists()


class _Net(BaseModule):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg)
        self.fc = nn.Linear(2, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.fc(inputs)


def test_payload_refused_by_pretrained_init(payload):
    net = _Net(init_cfg=dict(type='Pretrained', checkpoint=payload['path']))
    with pytest.raises(UntrustedCheckpointError) as err:
        net.init_weights()
    assert_refused(err, payload['path'])
    assert not payload['marker'].exists()


def _runner(tmp_path, load_from, resume):
    from mmengine.model import BaseModel

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, inputs=None, data_samples=None, mode='tensor'):
            return self.fc(inputs)

    return Runner(
        model=Model(), work_dir=str(tmp_path / 'work'), load_from=load_from,
        resume=resume, default_scope='mmengine')


@pytest.mark.parametrize('resume', [False, True], ids=['load_from', 'resume'])
def test_payload_refused_by_runner(payload, tmp_path, resume):
    runner = _runner(tmp_path, payload['path'], resume)
    with pytest.raises(UntrustedCheckpointError) as err:
        runner.load_or_resume()
    assert_refused(err, payload['path'])
    assert not payload['marker'].exists()


def test_payload_refused_as_teacher_checkpoint(tmp_path):
    from tiny_models import tiny_distill, tiny_segmentor
    marker = tmp_path / 'PAYLOAD_RAN'
    path = write_payload_ckpt(tmp_path / 'teacher.pth', marker)
    kwargs = dict(student=tiny_segmentor(8), teacher=tiny_segmentor(8),
                  connector=None)
    with pytest.raises(UntrustedCheckpointError) as err:
        tiny_distill(teacher_ckpt=path, _scope_='mmrazor', **kwargs)
    assert_refused(err, path, opt_in='teacher_ckpt_trusted=True')
    assert not marker.exists()


def test_mmengine_checkpoint_loads_as_teacher_without_trust(tmp_path):
    """A Runner-style teacher checkpoint (message hub, numpy meta) needs no
    teacher_ckpt_trusted any more."""
    from tiny_models import tiny_distill, tiny_segmentor
    from mmrazor.registry import MODELS
    from mmengine.config import ConfigDict
    torch.manual_seed(3)
    teacher = MODELS.build(ConfigDict(tiny_segmentor(8)))
    path = str(tmp_path / 'iter_5.pth')
    torch.save(dict(state_dict=teacher.state_dict(),
                    meta=dict(iter=np.int64(5)),
                    message_hub=dict(log_scalars=dict(
                        loss=HistoryBuffer([1.0], [1])))), path)
    alg = tiny_distill(student=tiny_segmentor(8), teacher=tiny_segmentor(8),
                       connector=None, _scope_='mmrazor', teacher_ckpt=path)
    own = alg.teacher.state_dict()
    for k, v in teacher.state_dict().items():
        assert torch.equal(own[k], v), k


# -------------------------------------------------------------- opting in
def test_trusting_one_file_unpickles_it_fully(payload, tmp_path):
    other = write_payload_ckpt(tmp_path / 'other.pth',
                               tmp_path / 'OTHER_RAN')
    trust_checkpoint(payload['path'])
    ckpt = _load_checkpoint(payload['path'])
    assert payload['marker'].exists()  # it really was fully unpickled
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    with pytest.raises(UntrustedCheckpointError):  # only that file
        _load_checkpoint(other)
    assert not (tmp_path / 'OTHER_RAN').exists()


def test_trust_checkpoints_from_cli_and_config(tmp_path):
    from mmengine.config import Config
    a, b = str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth')
    cfg = Config(dict(trusted_checkpoints=[b]))
    assert ckpt_mod.trust_checkpoints([a], cfg) == [a, b]
    assert ckpt_mod.is_trusted(a) and ckpt_mod.is_trusted(b)
    assert ckpt_mod.is_trusted(osp.join(str(tmp_path), '.', 'a.pth'))
    assert not ckpt_mod.is_trusted(str(tmp_path / 'c.pth'))


def test_teacher_opt_in(tmp_path):
    from tiny_models import tiny_distill, tiny_segmentor
    from mmrazor.registry import MODELS
    from mmengine.config import ConfigDict
    teacher = MODELS.build(ConfigDict(tiny_segmentor(8)))
    marker = tmp_path / 'PAYLOAD_RAN'
    path = write_payload_ckpt(tmp_path / 't.pth', marker,
                              state_dict=teacher.state_dict())
    tiny_distill(student=tiny_segmentor(8), teacher=tiny_segmentor(8),
                 connector=None, _scope_='mmrazor', teacher_ckpt=path,
                 teacher_ckpt_trusted=True)
    assert marker.exists()


# -------------------------------------------------------- unreadable files
def test_a_file_that_is_no_checkpoint_is_unreadable_not_untrusted(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(b'not a checkpoint at all')
    with pytest.raises(RuntimeError, match='garbage.pth is unreadable') as e:
        load_checkpoint_file(str(path))
    assert not isinstance(e.value, UntrustedCheckpointError)
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        _load_checkpoint(str(tmp_path / 'no_such.pth'))


def test_payload_module_is_real():
    """The payload used above really runs code when fully unpickled."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        marker = osp.join(d, 'm')
        pickle.loads(pickle.dumps(_Payload(marker)))
        assert os.path.exists(marker)

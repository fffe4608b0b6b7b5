"""Each upstream shim of i2ckd_mm.compat, and proof that it is needed.

Subprocesses import the upstream packages *without* i2ckd_mm (or with only
some shims) to document the upstream bugs: each shim's test fails if the shim
is removed. ``compat.py`` is loaded standalone (not through
``i2ckd_mm/__init__``, which would apply every shim at once).
"""
import importlib.machinery
import importlib.util
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import i2ckd_mm
from i2ckd_mm import compat
from load_file import load_file

COMPAT_PY = osp.abspath(compat.__file__)
FULL_MMCV = importlib.util.find_spec('mmcv._ext') is not None
needs_lite = pytest.mark.skipif(
    FULL_MMCV, reason='full mmcv (compiled ops) installed: the mmcv-lite '
    'substitute steps aside, nothing to test')

LOAD_COMPAT = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location('standalone_compat',
                                              {COMPAT_PY!r})
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
"""


def run_py(code, timeout=120):
    """Run ``code`` in a fresh interpreter; returns (rc, stdout + stderr)."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def load_standalone_compat():
    """A fresh copy of compat.py with its own globals (not applied)."""
    return load_file('standalone_compat', COMPAT_PY)


# ------------------------------------------------------------ mmcv.ops shim
@needs_lite
def test_mmseg_models_import_needs_the_mmcv_ops_shim():
    rc, out = run_py('import mmseg.models')
    assert rc != 0, 'mmseg.models imported without the shim: drop it?'
    assert 'mmcv' in out and ('_ext' in out or 'ops' in out), out[-2000:]
    rc, out = run_py(LOAD_COMPAT + """
assert compat.patch_mmcv_ops() == 'lite'
import mmseg.models
from mmseg.models.decode_heads import ASPPHead, PointHead
print('IMPORTED')
""")
    assert rc == 0 and 'IMPORTED' in out, out[-3000:]


@needs_lite
def test_flavour_is_reported():
    assert compat.MMCV_FLAVOUR == 'lite'
    import mmcv.ops
    assert mmcv.ops.__i2ckd_substitute__


@needs_lite
@pytest.mark.parametrize('op', ['RoIAlign', 'DeformConv2d', 'PSAMask',
                                'sigmoid_focal_loss', 'nms'])
def test_unavailable_op_raises_naming_it_and_full_mmcv(op):
    import mmcv.ops
    stand_in = getattr(mmcv.ops, op)  # importing the name works
    with pytest.raises(RuntimeError, match=rf'mmcv\.ops\.{op} is not '
                       r'available.*mmcv-lite.*MMCV_WITH_OPS=1.*mmcv==2\.1\.0'):
        stand_in(torch.zeros(1))

    class Sub(stand_in):  # upstream subclasses some ops at import time
        pass

    with pytest.raises(RuntimeError, match=rf'mmcv\.ops\.{op}'):
        Sub()


@needs_lite
def test_from_import_of_missing_op_works_until_used():
    from mmcv.ops import CrissCrossAttention, ModulatedDeformConv2d  # noqa
    # CrissCrossAttention is pure PyTorch: the real one is served
    cca = CrissCrossAttention(16)
    x = torch.randn(1, 16, 3, 3)
    # gamma starts at 0: the block is the identity until trained
    torch.testing.assert_close(cca(x), x)
    with torch.no_grad():
        cca.gamma.scale.fill_(1.0)
    assert not torch.allclose(cca(x), x)
    with pytest.raises(RuntimeError, match='ModulatedDeformConv2d'):
        ModulatedDeformConv2d(4, 4, 3)


@needs_lite
def test_dunder_lookups_are_not_turned_into_ops():
    import mmcv.ops
    with pytest.raises(AttributeError):
        mmcv.ops.__wrapped__  # noqa: B018  (inspect/pickle probe these)


def test_point_sample_matches_grid_sample_and_hand_values():
    from mmcv.ops import point_sample
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 5, 7)
    points = torch.rand(2, 11, 2)  # (x, y) in [0, 1]
    out = point_sample(feats, points, align_corners=False)
    ref = F.grid_sample(feats, 2 * points[:, :, None] - 1,
                        align_corners=False)[..., 0]
    assert out.shape == (2, 3, 11)
    torch.testing.assert_close(out, ref)
    # hand case: the centre of a 2x2 map is the mean of its 4 pixels; the
    # centre of the top-left pixel (x=y=0.25) is that pixel.
    img = torch.tensor([[[[1., 2.], [3., 6.]]]])
    pts = torch.tensor([[[0.5, 0.5], [0.25, 0.25], [0.75, 0.25]]])
    assert point_sample(img, pts).view(-1).tolist() == pytest.approx(
        [3.0, 1.0, 2.0])


def test_mmcv_ops_substitute_steps_aside_for_compiled_ops(monkeypatch):
    fresh = load_standalone_compat()
    ops_before = sys.modules.get('mmcv.ops')
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == 'mmcv._ext':  # pretend full mmcv is installed
            return importlib.machinery.ModuleSpec('mmcv._ext', None)
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, 'find_spec', find_spec)
    assert fresh.patch_mmcv_ops() == 'full'
    assert fresh.MMCV_FLAVOUR == 'full'
    assert sys.modules.get('mmcv.ops') is ops_before  # untouched


def test_substitute_steps_aside_in_a_fresh_process():
    # Before anything imported mmcv.ops: the substitute must not be created.
    rc, out = run_py("""
import importlib.machinery, importlib.util, sys
real = importlib.util.find_spec
def fake(name, *a, **k):
    if name == 'mmcv._ext':
        return importlib.machinery.ModuleSpec('mmcv._ext', None)
    return real(name, *a, **k)
importlib.util.find_spec = fake
""" + LOAD_COMPAT + """
print('FLAVOUR', compat.patch_mmcv_ops())
print('SUBSTITUTED', 'mmcv.ops' in sys.modules)
""")
    assert rc == 0, out[-2000:]
    assert 'FLAVOUR full' in out and 'SUBSTITUTED False' in out


# ------------------------------------------------------ mmrazor import shim
def test_mmrazor_models_import_needs_the_quantization_shim():
    patch_ops = '' if FULL_MMCV else 'compat.patch_mmcv_ops()\n'
    rc, out = run_py(LOAD_COMPAT + patch_ops + 'import mmrazor.models\n')
    assert rc != 0, 'mmrazor.models imported without the shim: drop it?'
    assert 'is not installed properly' in out or \
        'fuser_method_mappings' in out or 'reverse' in out, out[-2000:]
    rc, out = run_py(LOAD_COMPAT + patch_ops + """
compat.patch_mmrazor_quantization()
import mmrazor.models, mmrazor.engine
from mmrazor.models import SingleTeacherDistill, ConfigurableDistiller
print('IMPORTED')
""")
    assert rc == 0 and 'IMPORTED' in out, out[-3000:]


def test_quantization_stand_in_raises_clearly():
    mod = sys.modules['mmrazor.structures.quantization.backend_config']
    assert mod.__i2ckd_substitute__
    with pytest.raises(RuntimeError, match='quantization.*torch>=2'):
        mod.get_native_backend_config()


def test_package_import_makes_everything_importable():
    rc, out = run_py("""
import i2ckd_mm
import mmseg.models, mmrazor.models, mmrazor.engine
from mmrazor.registry import MODELS
assert MODELS.get('I2CKDLoss') is not None
print('OK', i2ckd_mm.compat.MMCV_FLAVOUR)
""")
    assert rc == 0 and 'OK' in out, out[-3000:]


# ---------------------------------------------------------- checkpoint shim
# (the loading policy itself: tests/test_checkpoint.py)
@pytest.fixture
def runner_like_ckpt(tmp_path):
    """What MMEngine's Runner saves: message hub buffers + numpy scalars."""
    from mmengine.logging import HistoryBuffer
    hist = HistoryBuffer()
    hist.update(0.5)
    hist.update(0.25)
    ckpt = dict(
        meta=dict(epoch=1, iter=np.int64(7), seed=np.float64(0.5)),
        state_dict=dict(w=torch.arange(3.)),
        message_hub=dict(log_scalars={'train/loss': hist}),
    )
    path = str(tmp_path / 'iter_7.pth')
    torch.save(ckpt, path)
    return path


def test_runner_checkpoint_fails_with_plain_weights_only_load(
        runner_like_ckpt):
    with pytest.raises(Exception, match='weights_only|Unsupported global'):
        torch.load(runner_like_ckpt, weights_only=True)


def test_runner_checkpoint_loads_through_mmengine_with_shim(
        runner_like_ckpt):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(runner_like_ckpt, map_location='cpu')
    assert int(ckpt['meta']['iter']) == 7
    hist = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(hist, HistoryBuffer) and hist.mean() == 0.375
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.))


def test_runner_checkpoint_fails_through_mmengine_without_shim(
        runner_like_ckpt, monkeypatch):
    from mmengine.runner import checkpoint
    # put MMEngine's own local loader back for this test only
    monkeypatch.setitem(checkpoint.CheckpointLoader._schemes, '',
                        checkpoint.load_from_local)
    with pytest.raises(Exception, match='weights_only|Unsupported global'):
        checkpoint._load_checkpoint(runner_like_ckpt, map_location='cpu')


def test_trusted_loader_missing_file_is_named(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'no_such.pth')
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        _load_checkpoint(path)


# ------------------------------------------------------------- idempotence
def test_apply_is_idempotent():
    from mmengine.runner.checkpoint import CheckpointLoader
    ops = sys.modules.get('mmcv.ops')
    quant = sys.modules['mmrazor.structures.quantization.backend_config']
    loader = CheckpointLoader._schemes['']
    flavour = compat.MMCV_FLAVOUR
    compat.apply()
    compat.apply()
    # a fresh copy (its _APPLIED is False) re-runs every shim: still no-ops
    fresh = load_standalone_compat()
    fresh.apply()
    fresh.apply()
    assert sys.modules.get('mmcv.ops') is ops
    assert sys.modules['mmrazor.structures.quantization.backend_config'] \
        is quant
    assert CheckpointLoader._schemes[''] is loader or \
        CheckpointLoader._schemes[''].__name__ == loader.__name__
    assert loader.__module__ == 'i2ckd_mm.checkpoint'
    assert CheckpointLoader._schemes['https://'].__module__ == \
        'i2ckd_mm.checkpoint'

    assert compat.MMCV_FLAVOUR == flavour == fresh.MMCV_FLAVOUR
    assert i2ckd_mm.compat is compat

"""Every workaround for the upstream OpenMMLab stack, in one place.

``i2ckd_mm/__init__.py`` calls :func:`apply` before anything imports MMSeg or
MMRazor. Each shim is one function with a comment saying which upstream bug it
works around and when it can be deleted. :func:`apply` is idempotent.

Shims:

* :func:`patch_mmcv_ops` - mmcv-lite ships no ``mmcv.ops`` package that
  imports, but ``import mmseg.models`` needs one.
* :func:`patch_mmrazor_quantization` - mmrazor 1.0.0 fails to import on
  torch >= 2 (removed ``torch.ao`` fuser helpers).
* :func:`patch_checkpoint_loading` - torch >= 2.6 defaults ``torch.load`` to
  ``weights_only=True`` which breaks MMEngine ``resume``/``load_from``.
"""
import importlib
import importlib.util
import os.path as osp
import sys
import types

import torch

_APPLIED = False

#: Which mmcv flavour was found: ``'full'`` (compiled ops) or ``'lite'``.
MMCV_FLAVOUR = None

_FULL_MMCV_HINT = (
    'It needs the compiled ops of full mmcv. Install it with '
    '`pip uninstall -y mmcv-lite && MMCV_WITH_OPS=1 MAX_JOBS=2 '
    'pip install --no-build-isolation mmcv==2.1.0` (see README, "full mmcv").')


def _has_compiled_mmcv_ops() -> bool:
    return importlib.util.find_spec('mmcv._ext') is not None


def _missing_op(name: str):
    """A stand-in for a compiled mmcv op that raises when it is used."""

    def _raise(*args, **kwargs):
        raise RuntimeError(
            f'mmcv.ops.{name} is not available: i2ckd_mm found mmcv-lite, '
            f'which has no compiled ops. {_FULL_MMCV_HINT}')

    # A class, so that both `op(...)` and `class X(op)` fail only on use.
    return type(name, (), {
        '__new__': lambda cls, *a, **k: _raise(),
        '__call__': _raise,
        '__doc__': f'Unavailable under mmcv-lite. {_FULL_MMCV_HINT}'
    })


def patch_mmcv_ops() -> str:
    """Provide ``mmcv.ops`` under mmcv-lite.

    Upstream: mmcv-lite 2.1.0 ships ``mmcv/ops/*.py`` but its
    ``mmcv/ops/__init__.py`` imports the compiled ``mmcv._ext``, while
    mmseg 1.2.2 imports ``point_sample`` and ``sigmoid_focal_loss`` from
    ``mmcv.ops`` unconditionally (and ``PSAMask``/``CrissCrossAttention``
    inside an ``except ModuleNotFoundError`` that an ImportError escapes).
    Remove when mmseg stops importing ``mmcv.ops`` at import time or
    OpenMMLab publishes full mmcv wheels for current torch.

    The substitute steps aside when compiled ops exist. It serves the pure
    PyTorch ops (``point_sample``, ``CrissCrossAttention``) from mmcv-lite's
    own files and returns, for any other name, a stand-in that raises a clear
    error naming the op when it is used.

    Returns:
        str: ``'full'`` or ``'lite'``.
    """
    global MMCV_FLAVOUR
    if _has_compiled_mmcv_ops():
        MMCV_FLAVOUR = 'full'
        return MMCV_FLAVOUR
    MMCV_FLAVOUR = 'lite'
    existing = sys.modules.get('mmcv.ops')
    if existing is not None and getattr(existing, '__i2ckd_substitute__',
                                        False):
        return MMCV_FLAVOUR
    import mmcv
    ops_dir = osp.join(osp.dirname(mmcv.__file__), 'ops')
    ops = types.ModuleType('mmcv.ops')
    ops.__path__ = [ops_dir]  # submodules load from mmcv-lite's files
    ops.__package__ = 'mmcv.ops'
    ops.__i2ckd_substitute__ = True
    sys.modules['mmcv.ops'] = ops
    mmcv.ops = ops
    ops.point_sample = importlib.import_module(
        'mmcv.ops.point_sample').point_sample
    ops.CrissCrossAttention = importlib.import_module(
        'mmcv.ops.cc_attention').CrissCrossAttention

    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        stand_in = _missing_op(name)
        setattr(ops, name, stand_in)
        return stand_in

    ops.__getattr__ = __getattr__
    return MMCV_FLAVOUR


def patch_mmrazor_quantization() -> None:
    """Let ``import mmrazor.models`` succeed on torch >= 2.

    Upstream: mmrazor 1.0.0's
    ``mmrazor/structures/quantization/backend_config`` imports
    ``reverse2``/``reverse3``/``reverse_sequential_wrapper2`` from
    ``torch.ao.quantization.fuser_method_mappings`` (removed in torch 2.x) and
    then raises "torch>=1.13 is not installed properly" at import time. We
    pre-register that sub-package with stand-ins that raise when quantization
    is used; distillation never touches it. Remove when mmrazor releases a
    torch-2 compatible version.
    """
    name = 'mmrazor.structures.quantization.backend_config'
    if name in sys.modules:
        return

    def _unavailable(*args, **kwargs):
        raise RuntimeError(
            'MMRazor quantization backend configs are unavailable: mmrazor '
            '1.0.0 cannot import them on torch>=2 (i2ckd_mm.compat).')

    mod = types.ModuleType(name)
    mod.__i2ckd_substitute__ = True
    mod.BackendConfigs = {}
    for backend in ('native', 'academic', 'openvino', 'tensorrt'):
        setattr(mod, f'get_{backend}_backend_config', _unavailable)
        setattr(mod, f'get_{backend}_backend_config_dict', _unavailable)
    mod.__all__ = [n for n in vars(mod) if n.startswith(('get_', 'Backend'))]
    sys.modules[name] = mod


def load_trusted_checkpoint(filename: str, map_location=None):
    """``torch.load`` with full unpickling for a run's own checkpoints."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def patch_checkpoint_loading() -> None:
    """Let MMEngine load the run's own checkpoints on torch >= 2.6.

    Upstream: torch 2.6 made ``weights_only=True`` the default of
    ``torch.load``; mmengine 0.10.7's local-file loader does not pass it, so
    ``resume`` and ``load_from`` fail on ``HistoryBuffer`` and numpy objects
    in the checkpoint's message hub. Remove when mmengine passes
    ``weights_only`` itself.

    Policy: files MMEngine loads from local paths (``--resume``,
    ``load_from``) are the user's own runs and are trusted like their code,
    so they are fully unpickled. Teacher checkpoints do NOT go through this
    loader: :func:`i2ckd_mm.models.utils.load_teacher_checkpoint` loads them
    with ``weights_only=True`` unless the config explicitly trusts them.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_trusted_checkpoint, force=True)


def apply() -> None:
    """Apply every shim once; safe to call again."""
    global _APPLIED
    if _APPLIED:
        return
    patch_mmcv_ops()
    patch_mmrazor_quantization()
    patch_checkpoint_loading()
    _APPLIED = True

"""Every workaround for the upstream OpenMMLab stack, in one place.

``i2ckd_mm/__init__.py`` calls :func:`apply` before anything imports MMSeg or
MMRazor. Each shim is one function with a comment saying which upstream bug it
works around and when it can be deleted. :func:`apply` is idempotent.

Shims:

* :func:`patch_mmcv_ops` - mmcv-lite ships no ``mmcv.ops`` package that
  imports, but ``import mmseg.models`` needs one.
* :func:`patch_mmrazor_quantization` - mmrazor 1.0.0 fails to import on
  torch >= 2 (removed ``torch.ao`` fuser helpers).
* :func:`require_mmcv` - mmcv is not a requirement by name (full mmcv or
  mmcv-lite both do); without either, one clear error.
* :func:`quiet_mmcv_lite_start` - one line instead of mmcv-lite's and
  setuptools' import-time warnings.
* :func:`patch_checkpoint_loading` - torch >= 2.6 defaults ``torch.load`` to
  ``weights_only=True`` which breaks MMEngine ``resume``/``load_from``; the
  loading policy itself lives in :mod:`i2ckd_mm.checkpoint`.
* :func:`patch_cpu_distributed` - MMEngine's ``init_dist`` and DDP wrapper
  assume CUDA; on a CPU-only torch the launchers (``tools/dist_train.sh``,
  Slurm, MPI) run with gloo instead of failing in ``torch.cuda.set_device``.
"""
import importlib
import importlib.util
import logging
import os.path as osp
import sys
import types
import warnings

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


MMCV_MISSING = (
    'i2ckd_mm needs mmcv 2.x (mmseg 1.2 asks for >=2.0.0rc4,<2.2.0, mmrazor '
    '1.0 for <=2.1.0) and found none. Install one of: mmcv-lite, no compiled '
    'ops, enough for DeepLabV3/PSPNet/FCN heads (`pip install '
    '"mmcv-lite==2.1.0"`, or this package\'s `cpu` extra); or full mmcv '
    'with compiled ops (`MMCV_WITH_OPS=1 pip install --no-build-isolation '
    'mmcv==2.1.0`, see README, "Full mmcv").')


def require_mmcv() -> None:
    """Fail with one message naming both ways to get mmcv when none is found.

    Why: setup.py names no mmcv distribution, so that an installed full mmcv
    is never replaced by mmcv-lite (both install the ``mmcv`` package).

    Raises:
        ImportError: No ``mmcv`` package is importable.
    """
    try:
        import mmcv  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != 'mmcv':
            raise  # mmcv is there but one of its own imports is missing
        raise ImportError(MMCV_MISSING) from None


#: The line :func:`quiet_mmcv_lite_start` logs, once per process.
MMCV_LITE_NOTICE = (
    'i2ckd_mm: using mmcv-lite (no compiled mmcv ops). Models built from '
    'mmcv.cnn blocks (DeepLabV3, PSPNet, FCN heads) run as usual; an op that '
    'needs compiled code (e.g. deformable conv, '
    'MultiScaleDeformableAttention, PSAMask) raises an error naming it when '
    'used. Full mmcv: README, '
    '"Full mmcv".')


def quiet_mmcv_lite_start() -> None:
    """Replace two upstream import-time warnings with one line.

    Upstream: under mmcv-lite, ``mmcv/cnn/bricks/transformer.py`` (2.1.0)
    warns "Fail to import MultiScaleDeformableAttention ... install mmcv
    rather than mmcv-lite" on every import of mmseg's models, and setuptools
    >= 67.5 warns "pkg_resources is deprecated as an API" each time mmengine
    0.10.x imports/reloads ``pkg_resources`` (``mmengine.utils.
    package_utils``, e.g. to resolve ``mmseg::`` configs). Only those two
    messages are filtered, by message and module; every other warning is
    untouched. Under mmcv-lite, :data:`MMCV_LITE_NOTICE` is logged instead
    (logger ``i2ckd_mm``, WARNING; silence it with
    ``logging.getLogger('i2ckd_mm').setLevel(logging.ERROR)``). Remove when
    mmcv stops warning under mmcv-lite and mmengine stops using
    ``pkg_resources`` (neither as of mmcv 2.1.0 / mmengine 0.10.7).
    """
    warnings.filterwarnings(
        'ignore',
        message=r'pkg_resources is deprecated as an API',
        category=UserWarning,
        module=r'(mmengine\.utils\.package_utils|importlib)$')
    if _has_compiled_mmcv_ops():
        return
    warnings.filterwarnings(
        'ignore',
        message=r'Fail to import ``MultiScaleDeformableAttention``',
        category=UserWarning,
        module=r'mmcv\.cnn\.bricks\.transformer$')
    logging.getLogger('i2ckd_mm').warning(MMCV_LITE_NOTICE)


def patch_checkpoint_loading() -> None:
    """Let MMEngine load its own checkpoints on torch >= 2.6, safely.

    Upstream: torch 2.6 made ``weights_only=True`` the default of
    ``torch.load``; mmengine 0.10.x's local-file loader does not pass it, so
    ``resume`` and ``load_from`` fail on ``HistoryBuffer`` and numpy objects
    in the checkpoint's message hub. Remove when mmengine loads its own
    checkpoints with ``weights_only=True`` (not as of 0.10.7).

    :func:`i2ckd_mm.checkpoint.install_mmengine_loaders` registers loaders
    that keep ``weights_only=True`` and allow exactly the MMEngine types, only
    while they run; a file that needs more is refused with an error naming
    it and the opt-in.
    """
    # absolute: tests load this file standalone, outside the package
    from i2ckd_mm.checkpoint import install_mmengine_loaders
    install_mmengine_loaders()


def patch_cpu_distributed() -> None:
    """Let ``--launcher pytorch/slurm/mpi`` run CPU processes (gloo).

    Upstream: mmengine 0.10.7's ``mmengine.dist.utils._init_dist_pytorch``
    (and ``_init_dist_slurm``, ``_init_dist_mpi``) call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a
    CPU build of torch (``AttributeError: module 'torch._C' has no attribute
    '_cuda_setDevice'``) and on a CUDA build without a visible GPU; then
    ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
    ``MMDistributedDataParallel``, which torch's DDP rejects for a CPU module.
    Remove when mmengine skips ``set_device`` and ``device_ids`` without an
    accelerator (not the case up to 0.10.7).

    Acts only when no accelerator is available (CUDA, MLU, NPU, MUSA): GPU
    runs take the upstream code unchanged. On CPU, the ``nccl`` backend
    (MMEngine's default) fails with an error naming the gloo option instead
    of torch's "NCCL not built in".
    """
    import functools

    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import distributed as ddp_module

    if getattr(dist_utils, '__i2ckd_cpu_patched__', False):
        return

    def cpu_only() -> bool:
        from mmengine.device import (is_mlu_available, is_musa_available,
                                     is_npu_available)
        return not (torch.cuda.is_available() or is_mlu_available()
                    or is_npu_available() or is_musa_available())

    def without_set_device(init_fn):

        @functools.wraps(init_fn)
        def init(backend, *args, **kwargs):
            if not cpu_only():
                return init_fn(backend, *args, **kwargs)
            if backend == 'nccl':
                raise RuntimeError(
                    "torch.distributed backend 'nccl' needs CUDA GPUs, but "
                    'torch.cuda.is_available() is False. For CPU processes '
                    'use gloo: --cfg-options env_cfg.dist_cfg.backend=gloo '
                    "(or env_cfg = dict(dist_cfg=dict(backend='gloo')) in "
                    'the config).')
            # No device to select on CPU; restored right after, so nothing
            # else in the process sees the stand-in.
            set_device = torch.cuda.set_device
            torch.cuda.set_device = lambda device: None
            try:
                return init_fn(backend, *args, **kwargs)
            finally:
                torch.cuda.set_device = set_device

        return init

    for name in ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi'):
        setattr(dist_utils, name, without_set_device(getattr(dist_utils,
                                                             name)))

    ddp_init = ddp_module.MMDistributedDataParallel.__init__

    @functools.wraps(ddp_init)
    def init_ddp(self, module, *args, **kwargs):
        if cpu_only() and all(p.device.type == 'cpu'
                              for p in module.parameters()):
            # torch's DDP requires device_ids/output_device None for a CPU
            # module (it raises otherwise); Runner.wrap_model always sets them
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        ddp_init(self, module, *args, **kwargs)

    ddp_module.MMDistributedDataParallel.__init__ = init_ddp
    dist_utils.__i2ckd_cpu_patched__ = True


def apply() -> None:
    """Apply every shim once; safe to call again."""
    global _APPLIED
    if _APPLIED:
        return
    require_mmcv()
    quiet_mmcv_lite_start()  # before patch_mmcv_ops imports mmcv.cnn
    patch_mmcv_ops()
    patch_mmrazor_quantization()
    patch_checkpoint_loading()
    patch_cpu_distributed()
    _APPLIED = True

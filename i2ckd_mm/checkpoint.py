"""How i2ckd_mm loads checkpoints: nothing unpickles code behind your back.

Unpickling a file fully can run any code stored in it, so every checkpoint
that MMEngine or i2ckd_mm reads is loaded with
``torch.load(..., weights_only=True)``: tensors, plain containers and the
few MMEngine types listed in :func:`mmengine_safe_globals`. That covers
everything an MMEngine Runner writes (weights, ``meta``, optimizer and
scheduler state, the message hub with its ``HistoryBuffer`` logs and numpy
scalars), so ``resume``, ``load_from``, ``tools/test.py``, ``Pretrained``
backbone inits, teacher checkpoints and the export tool work unchanged.

A file that needs more fails with :class:`UntrustedCheckpointError`, which
names the file and how to opt in for it. Opting in is per file:

* ``tools/train.py`` / ``tools/test.py``: ``--trust-checkpoint PATH``, or
  ``trusted_checkpoints = ['PATH']`` in the config;
* ``tools/export_student.py``: ``--trust-checkpoint``;
* the teacher: ``model.teacher_ckpt_trusted=True``;
* Python: :func:`trust_checkpoint`.

:func:`install_mmengine_loaders` (called by ``i2ckd_mm.compat.apply``)
registers the loaders of this module for MMEngine's local and http(s)
checkpoint schemes. The extra types are allowed only while one of our
loaders runs (``torch.serialization.safe_globals``); torch's default for the
rest of the process is left alone.
"""
import contextlib
import os.path as osp
import pickle
from collections import Counter, OrderedDict
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray

#: How to trust a file, for errors raised while MMEngine loads it.
GENERIC_OPT_IN = (
    "pass `--trust-checkpoint {path}` to tools/train.py or tools/test.py, "
    "or add it to `trusted_checkpoints` in the config, or call "
    "`i2ckd_mm.checkpoint.trust_checkpoint('{path}')` in Python")

#: The statistics MMEngine's HistoryBuffer registers by default; a pickled
#: buffer stores them as ``getattr(HistoryBuffer, name)``.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

_TRUSTED = set()


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs full unpickling and was not trusted explicitly."""


def _key(path: str) -> str:
    return osp.realpath(osp.expanduser(str(path)))


def trust_checkpoint(path: str) -> None:
    """Allow full unpickling (``weights_only=False``) of one local file.

    Only for a file from a source you trust: unpickling can run code.

    Args:
        path (str): The checkpoint's path (symlinks and ``~`` resolved).
    """
    _TRUSTED.add(_key(path))


def add_trust_argument(parser) -> None:
    """Add ``--trust-checkpoint PATH`` (repeatable) to a tool's argparse
    parser; pass its values to :func:`trust_checkpoints`."""
    parser.add_argument(
        '--trust-checkpoint',
        action='append',
        default=[],
        metavar='PATH',
        help='unpickle this checkpoint fully (torch.load(weights_only='
        'False)); repeatable, also `trusted_checkpoints` in the config. Not '
        'needed for MMEngine checkpoints, which load with weights_only=True; '
        'only for files from a source you trust: unpickling can run code')


def trust_checkpoints(paths=None, cfg=None) -> List[str]:
    """Trust the files given on a command line and in a config.

    Args:
        paths (list[str], optional): E.g. ``--trust-checkpoint`` values.
        cfg (Config, optional): Its ``trusted_checkpoints`` (a path or a
            list of paths) are trusted too.

    Returns:
        list[str]: The paths now trusted by this call.
    """
    found = list(paths or [])
    from_cfg = cfg.get('trusted_checkpoints', None) if cfg else None
    if isinstance(from_cfg, str):
        from_cfg = [from_cfg]
    found += list(from_cfg or [])
    for path in found:
        trust_checkpoint(path)
    return found


def is_trusted(path: str) -> bool:
    """Whether :func:`trust_checkpoint` was called for ``path``."""
    return _key(path) in _TRUSTED


def _restricted_history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` limited to HistoryBuffer's default statistics methods.

    Why: pickle protocol 2 (torch.save's default) stores a method such as
    ``HistoryBuffer.mean`` as ``builtins.getattr(HistoryBuffer, 'mean')``,
    and every message-hub buffer pickles its statistics table that way.
    Allowing the real ``builtins.getattr`` would let a file reach any
    attribute of any allowed object; this stand-in, registered under that
    name only while our loaders run, returns exactly those four methods and
    refuses everything else.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a weights_only '
        'checkpoint (only the default statistics methods of MMEngine\'s '
        'HistoryBuffer are)')


def mmengine_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals MMEngine-written checkpoints hold beyond torch's default.

    Exactly: MMEngine's ``HistoryBuffer`` (message hub logs), its statistics
    methods through :func:`_restricted_history_buffer_getattr`, numpy arrays
    (``_reconstruct``, ``ndarray``), scalars (``scalar``) and dtypes (the
    ``dtype`` class and the per-type dtype classes, object dtype excluded),
    under both numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``)
    names, and ``collections.Counter`` (MultiStepLR milestones).

    Returns:
        list: Entries for ``torch.serialization.safe_globals``.
    """
    from mmengine.logging import HistoryBuffer
    entries = [
        HistoryBuffer,
        (_restricted_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        Counter,
    ]
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append((_np_multiarray._reconstruct, f'{mod}._reconstruct'))
        entries.append((_np_multiarray.scalar, f'{mod}.scalar'))
    # A pickled dtype is rebuilt as np.dtype(...) and then gets its state
    # set, which the weights_only unpickler allows only for allowlisted
    # types: the concrete class, e.g. numpy.dtypes.Float64DType.
    for code in np.typecodes['All'].replace('O', ''):
        cls = type(np.dtype(code))
        if cls not in entries:
            entries.append(cls)
    return entries


@contextlib.contextmanager
def mmengine_types_allowed() -> Iterator[None]:
    """Allow :func:`mmengine_safe_globals` in ``weights_only`` loads, here.

    Entries that the process already allowed are left in place on exit.
    torch keeps its allowlist per process, so while the block runs another
    thread's ``weights_only`` load would accept these types too (and no
    others); torch's default is unchanged before and after.
    HistoryBuffer's ``__setstate__`` merges a file's statistics table into
    the class-wide one; if a file changed it, the table is restored and the
    load fails.

    Raises:
        RuntimeError: torch has no ``torch.serialization.safe_globals``
            (older than the torch>=2.6 setup.py asks for).
        pickle.UnpicklingError: The loaded file replaced HistoryBuffer's
            statistics methods.
    """
    from mmengine.logging import HistoryBuffer
    if not hasattr(torch.serialization, 'safe_globals'):
        raise RuntimeError(
            f'i2ckd_mm needs torch>=2.6 to load checkpoints safely (found '
            f'{torch.__version__}): install a newer torch build.')
    before = set(torch.serialization.get_safe_globals())
    added = [g for g in mmengine_safe_globals() if g not in before]
    stats_before = dict(HistoryBuffer._statistics_methods)
    # what unpickling may leave there: the table as it was, plus the
    # defaults that every HistoryBuffer.__setstate__ registers
    allowed = {k: getattr(HistoryBuffer, k)
               for k in _HISTORY_BUFFER_STATISTICS}
    allowed.update(stats_before)
    with torch.serialization.safe_globals(added):
        yield
    stats = HistoryBuffer._statistics_methods
    if any(allowed.get(k) is not v for k, v in stats.items()):
        stats.clear()
        stats.update(stats_before)
        raise pickle.UnpicklingError(
            'HistoryBuffer statistics methods other than MMEngine\'s are not '
            'allowed: the checkpoint tried to replace them')


#: Phrases of torch's weights_only errors that mean "an object outside the
#: allowlist", as opposed to a file that is no pickle at all.
_NEEDS_UNPICKLING = ('GLOBAL', 'global', 'reduce', 'Can only build',
                     'Can only create', 'not allowed')


def _needs_full_unpickling(error: Exception) -> bool:
    return any(phrase in str(error) for phrase in _NEEDS_UNPICKLING)


def _refusal(path: str, error: Exception, opt_in: str) -> str:
    lines = str(error).strip().splitlines()
    detail = next((line for line in lines if 'GLOBAL' in line or
                   'not allowed' in line), lines[0] if lines else '')
    # torch goes on to suggest a process-wide add_safe_globals: not ours
    detail = detail.split(' Please use ')[0]
    return (f'{path}: refusing to unpickle this checkpoint fully. It does '
            'not load with torch.load(weights_only=True) and the MMEngine '
            f'types i2ckd_mm allows ({detail.strip()}); full unpickling can '
            'run code stored in the file. If you trust its source, '
            f'{opt_in.format(path=path)}.')


def load_checkpoint_file(path: str,
                         map_location: Any = None,
                         trusted: Optional[bool] = None,
                         opt_in: str = GENERIC_OPT_IN) -> Any:
    """Load a local checkpoint file safely.

    Args:
        path (str): Local file.
        map_location: As for ``torch.load``.
        trusted (bool, optional): Full unpickling. ``None``: whether
            :func:`trust_checkpoint` was called for the file.
        opt_in (str): How the caller's user trusts a file, for the error;
            ``{path}`` is filled in.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: No such file.
        UntrustedCheckpointError: The file needs full unpickling and is not
            trusted.
    """
    filename = osp.expanduser(str(path))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if trusted is None:
        trusted = is_trusted(filename)
    if trusted:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    try:
        with mmengine_types_allowed():
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not _needs_full_unpickling(e):
            raise RuntimeError(
                f'{filename} is unreadable (truncated or not a PyTorch '
                f'checkpoint): {str(e).strip().splitlines()[-1]}') from e
        raise UntrustedCheckpointError(_refusal(filename, e, opt_in)) from e


def _mmengine_local_loader(filename: str, map_location: Any = None) -> Any:
    """MMEngine's local-file checkpoint scheme, loading safely."""
    return load_checkpoint_file(filename, map_location)


def _mmengine_http_loader(filename: str,
                          map_location: Any = None,
                          model_dir: Optional[str] = None,
                          progress: bool = True) -> Any:
    """MMEngine's http(s) scheme with the MMEngine types allowed.

    mmengine downloads and calls ``torch.load`` without ``weights_only``,
    i.e. with torch's default, which is ``True`` on the torch>=2.6 that
    setup.py requires: remote files are never fully unpickled here.
    """
    from mmengine.runner.checkpoint import load_from_http
    try:
        with mmengine_types_allowed():
            return load_from_http(filename, map_location, model_dir,
                                  progress)
    except pickle.UnpicklingError as e:
        raise UntrustedCheckpointError(
            _refusal(filename, e, 'download it and trust the local file: '
                     + GENERIC_OPT_IN.format(path='FILE'))) from e


def install_mmengine_loaders() -> None:
    """Make MMEngine's CheckpointLoader use this module's safe loaders.

    Upstream: torch 2.6 made ``weights_only=True`` the default of
    ``torch.load``; mmengine 0.10.x does not pass ``weights_only``, so
    ``resume`` and ``load_from`` fail on the HistoryBuffer and numpy objects
    in a Runner checkpoint. Registering the loaders for the local ('') and
    http(s) prefixes covers ``load_checkpoint``, ``_load_checkpoint``,
    ``CheckpointLoader.load_checkpoint``, Runner ``load_from``/``resume``,
    ``Pretrained`` inits and ``mmseg.apis.init_model``. Remove when mmengine
    loads its own checkpoints with ``weights_only=True`` (not as of 0.10.7).
    Idempotent.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=_mmengine_local_loader, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'),
        loader=_mmengine_http_loader,
        force=True)


# ------------------------------------------------------------------ teacher
TEACHER_OPT_IN = ('set `teacher_ckpt_trusted=True` in the algorithm config '
                  '(model.teacher_ckpt_trusted=True)')


def _read_teacher(path: str, trusted: bool) -> Any:
    if path.startswith(('http://', 'https://')):
        try:
            with mmengine_types_allowed():
                return torch.hub.load_state_dict_from_url(
                    path, map_location='cpu', weights_only=not trusted)
        except pickle.UnpicklingError as e:
            raise UntrustedCheckpointError(
                _refusal(path, e, TEACHER_OPT_IN)) from e
    if not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(
            f'teacher checkpoint not found: {path!r} (teacher_ckpt in the '
            'config; pass a model-zoo URL or a local .pth of the teacher)')
    try:
        return load_checkpoint_file(
            path, map_location='cpu', trusted=trusted, opt_in=TEACHER_OPT_IN)
    except UntrustedCheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise RuntimeError(
            f'teacher checkpoint {path!r} is unreadable (truncated or not a '
            f'PyTorch checkpoint): {e}') from e


def load_teacher_checkpoint(teacher: nn.Module,
                            path: str,
                            trusted: bool = False) -> None:
    """Load a teacher checkpoint strictly into ``teacher``.

    Args:
        teacher (nn.Module): The built teacher model.
        path (str): Local path or http(s) URL of an MMSeg checkpoint (a dict
            with ``state_dict``, or a bare state dict). MMEngine run
            checkpoints load without ``trusted``.
        trusted (bool): Unpickle the file fully (``weights_only=False``).
            Only for files from a source you trust: unpickling can run code.

    Raises:
        FileNotFoundError: The path does not exist.
        UntrustedCheckpointError: The file needs ``trusted=True``.
        RuntimeError: The file is unreadable, or its keys/shapes do not
            match the teacher.
    """
    ckpt = _read_teacher(path, trusted)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise RuntimeError(f'teacher checkpoint {path!r} holds no state dict')
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state.items())
    own = teacher.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f'{k}: checkpoint {tuple(v.shape)} vs teacher {tuple(own[k].shape)}'
        for k, v in state.items()
        if k in own and hasattr(v, 'shape') and v.shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise RuntimeError(
            f'teacher checkpoint {path!r} does not match the teacher model: '
            f'{len(missing)} missing keys {missing[:5]}, {len(unexpected)} '
            f'unexpected keys {unexpected[:5]}, {len(wrong_shape)} shape '
            f'mismatches {wrong_shape[:5]}. Is teacher_ckpt the checkpoint '
            'of the configured teacher architecture?')
    teacher.load_state_dict(state, strict=True)

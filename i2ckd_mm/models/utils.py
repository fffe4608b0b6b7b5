"""Teacher checkpoint loading with a safe default."""
import os.path as osp
import pickle
from collections import OrderedDict

import torch
from torch import nn


def _read(path: str, trusted: bool):
    """Read a checkpoint; ``weights_only`` unless the user trusts the file."""
    if path.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(
            path, map_location='cpu', weights_only=not trusted)
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'teacher checkpoint not found: {path!r} (teacher_ckpt in the '
            'config; pass a model-zoo URL or a local .pth of the teacher)')
    try:
        return torch.load(path, map_location='cpu', weights_only=not trusted)
    except pickle.UnpicklingError as e:
        if trusted:
            raise RuntimeError(
                f'teacher checkpoint {path!r} is unreadable: {e}') from e
        raise RuntimeError(
            f'teacher checkpoint {path!r} could not be loaded with '
            'weights_only=True (it holds objects other than tensors and plain '
            'containers). If you trust its source, set '
            'teacher_ckpt_trusted=True in the algorithm config to unpickle '
            f'it fully. Original error: {str(e).splitlines()[0]}') from e
    except (RuntimeError, EOFError, OSError) as e:
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
            with ``state_dict``, or a bare state dict).
        trusted (bool): Unpickle the file fully (``weights_only=False``).
            Only for files from a source you trust: unpickling can run code.

    Raises:
        FileNotFoundError: The path does not exist.
        RuntimeError: The file is unreadable, or needs ``trusted=True``, or
            its keys/shapes do not match the teacher.
    """
    ckpt = _read(path, trusted)
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

"""Export the student of a distillation run as a plain MMSeg model.

The result loads with ``mmseg.apis.init_model`` / ``inference_model`` and
MMSeg's own tools, with no ``i2ckd_mm`` import: the config holds only the
student segmentor (MMSeg types, ``default_scope='mmseg'``) and its test
pipeline; the checkpoint holds only the student's tensors and plain-list
metadata, so it loads with ``torch.load(..., weights_only=True)``.

The run's checkpoint is read through :mod:`i2ckd_mm.checkpoint`
(``weights_only=True`` with the MMEngine types allowed); a file that needs
full unpickling is refused unless ``trusted=True``
(``tools/export_student.py --trust-checkpoint``).

Upstream API used: only public functions (``mmengine.hub.get_config`` for
``package::`` config paths, as MMRazor's own ``cfg_path`` does through
``mmengine.hub.get_model``; ``Config.fromfile``; the MMSeg registry). No
private upstream API remains in this module.
"""
import copy
import os
import os.path as osp
from collections import Counter, OrderedDict
from typing import Dict, Optional, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict

from ..checkpoint import load_checkpoint_file

STUDENT_PREFIX = 'architecture.'
#: Prefixes other than the student's that a distillation checkpoint holds.
DISTILL_PREFIXES = ('teacher.', 'distiller.')


def _load_config(config: Union[str, Config]) -> Config:
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config!r}')
    return Config.fromfile(config)


def student_config(config: Union[str, Config]) -> Config:
    """The plain MMSeg config of the student of a distillation config.

    Args:
        config (str | Config): The distillation config (``model`` is an
            MMRazor algorithm with an ``architecture``).

    Returns:
        Config: ``model`` (the student segmentor, no pretrained/init weights),
        ``test_pipeline`` and ``default_scope='mmseg'``.

    Raises:
        KeyError: The config has no ``model.architecture`` or no test
            pipeline.
    """
    cfg = _load_config(config)
    algo = cfg.get('model', None)
    if not isinstance(algo, dict) or 'architecture' not in algo:
        kind = algo.get('type') if isinstance(algo, dict) else None
        raise KeyError('the config is not a distillation config: model '
                       f"(type {kind!r}) has no 'architecture'")
    student = copy.deepcopy(algo['architecture'])
    if 'cfg_path' in student:
        # MMRazor also accepts architecture=dict(cfg_path=..., ...)
        student = _config_of(student['cfg_path']).model
    student = ConfigDict(student)
    student.pop('_scope_', None)
    if 'data_preprocessor' not in student:
        if 'data_preprocessor' not in algo:
            raise KeyError('neither model.architecture nor model has a '
                           'data_preprocessor')
        student['data_preprocessor'] = copy.deepcopy(
            algo['data_preprocessor'])
    # the weights come from the exported checkpoint
    student['pretrained'] = None
    if isinstance(student.get('backbone'), dict):
        student['backbone']['init_cfg'] = None
    student.pop('train_cfg', None)
    student['train_cfg'] = dict()

    pipeline = cfg.get('test_pipeline', None)
    if pipeline is None and 'test_dataloader' in cfg:
        pipeline = cfg.test_dataloader.dataset.get('pipeline', None)
    if not pipeline:
        raise KeyError('the config has neither test_pipeline nor '
                       'test_dataloader.dataset.pipeline')
    return Config(
        dict(
            model=student.to_dict(),
            test_pipeline=[dict(t) for t in pipeline],
            default_scope='mmseg'))


def _config_of(cfg_path: str) -> Config:
    """The config of an MMRazor ``cfg_path``: ``package::rel/path.py`` (as
    MMRazor resolves it) or a local file."""
    if '::' in cfg_path:
        from mmengine.hub import get_config
        return get_config(cfg_path)
    return _load_config(cfg_path)


def _prefix_counts(state: Dict) -> str:
    counts = Counter(k.split('.', 1)[0] + '.' for k in state)
    return ', '.join(f'{p}* ({n})' for p, n in counts.most_common(8))


def _plain_meta(meta: Optional[Dict], cfg: Config) -> Dict:
    """``dataset_meta`` with classes/palette as plain lists."""
    dataset_meta = (meta or {}).get('dataset_meta', None)
    if not dataset_meta:
        # checkpoints written outside a Runner: the dataset class's metainfo
        from mmseg.registry import DATASETS
        ds = cfg.get('test_dataloader', {}).get('dataset', {})
        cls = DATASETS.get(ds.get('type')) if ds.get('type') else None
        dataset_meta = getattr(cls, 'METAINFO', None)
    if not dataset_meta or 'classes' not in dataset_meta:
        raise KeyError('no dataset_meta (classes, palette) in the checkpoint '
                       'meta nor a registered test dataset type in the '
                       'config')
    out = dict(classes=[str(c) for c in dataset_meta['classes']])
    if dataset_meta.get('palette') is not None:
        out['palette'] = [[int(v) for v in c]
                          for c in dataset_meta['palette']]
    return out


def split_distill_state(state: Dict) -> Tuple[OrderedDict, Dict]:
    """Student tensors (``architecture.`` removed) of a distill state dict.

    Args:
        state (dict): State dict of an MMRazor distillation algorithm.

    Returns:
        tuple: The student's state dict and a count of the dropped keys per
        prefix.

    Raises:
        ValueError: The state dict is not a distillation run's (it lacks
            ``architecture.*`` or both ``teacher.*`` and ``distiller.*``);
            the message names the prefixes found.
    """
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state.items())
    has_student = any(k.startswith(STUDENT_PREFIX) for k in state)
    has_distill = any(k.startswith(DISTILL_PREFIXES) for k in state)
    if not (has_student and has_distill):
        raise ValueError(
            'not a distillation checkpoint: expected architecture.* (the '
            'student) and teacher.* / distiller.* keys, found '
            f'{_prefix_counts(state) or "no keys"}. A plain MMSeg checkpoint '
            'needs no export.')
    student = OrderedDict((k[len(STUDENT_PREFIX):], v)
                          for k, v in state.items()
                          if k.startswith(STUDENT_PREFIX))
    dropped = Counter(k.split('.', 1)[0] for k in state
                      if not k.startswith(STUDENT_PREFIX))
    return student, dict(dropped)


def export_student(checkpoint: str,
                   config: Union[str, Config],
                   out_dir: str,
                   name: str = 'student',
                   trusted: bool = False) -> Tuple[str, str]:
    """Write ``{out_dir}/{name}.pth`` and ``{name}.py``: a plain MMSeg model.

    Args:
        checkpoint (str): A distillation run's checkpoint (e.g.
            ``work_dir/iter_4000.pth``).
        config (str | Config): The distillation config of that run.
        out_dir (str): Output folder (created).
        name (str): File stem of the outputs.
        trusted (bool): Unpickle ``checkpoint`` fully
            (``weights_only=False``). Not needed for MMEngine run checkpoints;
            only for a file from a source you trust: unpickling can run code.

    Returns:
        tuple: Paths of the exported checkpoint and config.

    Raises:
        FileNotFoundError: Missing checkpoint or config.
        i2ckd_mm.checkpoint.UntrustedCheckpointError: The checkpoint needs
            full unpickling and ``trusted`` is False.
        ValueError: Not a distillation checkpoint, or its student tensors do
            not fit the config's student.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint!r}')
    cfg = _load_config(config)
    plain_cfg = student_config(cfg)
    ckpt = load_checkpoint_file(
        checkpoint, map_location='cpu', trusted=trusted,
        opt_in='pass --trust-checkpoint to tools/export_student.py '
        '(trusted=True to export_student)')
    if not isinstance(ckpt, dict):
        raise ValueError(f'{checkpoint!r} holds a {type(ckpt).__name__}, '
                         'not a checkpoint dict')
    raw_state = ckpt.get('state_dict', ckpt)
    student_state, dropped = split_distill_state(raw_state)
    student_state = OrderedDict(
        (k, v.detach().clone().contiguous()) for k, v in student_state.items())

    # the student tensors must fit the config's student exactly
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(plain_cfg.model))
    try:
        model.load_state_dict(student_state, strict=True)
    except RuntimeError as e:
        raise ValueError(f'the student tensors of {checkpoint!r} do not fit '
                         f'the student in the config: {e}') from e

    meta = ckpt.get('meta', {}) if isinstance(ckpt.get('meta'), dict) else {}
    plain_meta = dict(
        dataset_meta=_plain_meta(meta, cfg),
        exported_from=osp.abspath(checkpoint),
        dropped_keys={str(k): int(v) for k, v in dropped.items()})
    if isinstance(meta.get('iter'), int):
        plain_meta['iter'] = int(meta['iter'])

    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, f'{name}.pth')
    cfg_path = osp.join(out_dir, f'{name}.py')
    torch.save(dict(state_dict=student_state, meta=plain_meta), ckpt_path)
    plain_cfg.dump(cfg_path)
    return ckpt_path, cfg_path

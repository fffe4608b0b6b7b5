"""A ConfigurableDistiller whose losses can also take ground-truth labels."""
import contextlib
import difflib
from inspect import signature
from typing import Dict, Optional

from mmrazor.models.distillers import ConfigurableDistiller
from mmrazor.models.task_modules.recorder import (ModuleOutputsRecorder,
                                                  ParameterRecorder)
from mmrazor.registry import MODELS
from torch import Tensor, nn

#: The batch data an algorithm hands to :meth:`compute_distill_losses`.
DATA_KEYS = ('gt_sem_seg', )


def check_recorder_sources(recorders, model: nn.Module, side: str) -> None:
    """Raise a KeyError naming a recorder whose source is not in ``model``.

    MMRazor only asserts ``"<source>" is not in the model.``, without saying
    which recorder or model; module/parameter recorders are checked here
    before MMRazor hooks them.
    """
    modules = [n for n, _ in model.named_modules()]
    params = [n for n, _ in model.named_parameters()]
    for name, recorder in recorders.recorders.items():
        if isinstance(recorder, ModuleOutputsRecorder):  # + ModuleInputs
            kind, names = 'module', modules
        elif isinstance(recorder, ParameterRecorder):
            kind, names = 'parameter', params
        else:
            continue
        if recorder.source not in names:
            close = difflib.get_close_matches(recorder.source, names, n=3)
            raise KeyError(
                f'{side}_recorders.{name}: source {recorder.source!r} is not '
                f'a {kind} of the {side} ({type(model).__name__}); close '
                f'names: {close}')


@MODELS.register_module()
class GTAwareDistiller(ConfigurableDistiller):
    """ConfigurableDistiller + labels as a loss input, + per-loss diagnostics.

    Besides MMRazor's recorder entries, a ``loss_forward_mappings`` entry may
    be ``dict(from_data='gt_sem_seg')``: the algorithm stacks the labels of
    the batch once (N x H x W, int64) and passes them to
    :meth:`compute_distill_losses`. No recorder is hooked on an unrelated
    module to smuggle labels in.

    Example::

        loss_forward_mappings=dict(
            loss_i2ckd=dict(
                preds_S=dict(from_student=True, recorder='feat',
                             connector='loss_i2ckd_sfeat'),
                preds_T=dict(from_student=False, recorder='feat'),
                gt=dict(from_data='gt_sem_seg')))

    The algorithm hands the batch data over either as the argument of
    :meth:`compute_distill_losses` or, for code that calls it without one
    (MMRazor's ``SingleTeacherDistill.loss``), with :meth:`with_batch_data`.

    A loss module with a ``last_stats`` dict (e.g. ``I2CKDLoss``) has those
    values added to the returned dict as ``{name}_{stat}`` with ``loss``
    removed from the name, so MMEngine logs them without backpropagating.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batch_data: Dict[str, Tensor] = {}

    @contextlib.contextmanager
    def with_batch_data(self, **data: Tensor):
        """Within the context, :meth:`compute_distill_losses` called
        without batch data uses ``data`` (e.g. ``gt_sem_seg=gt``)."""
        self._batch_data = data
        try:
            yield
        finally:
            self._batch_data = {}

    def prepare_from_student(self, model: nn.Module) -> None:
        check_recorder_sources(self.student_recorders, model, 'student')
        super().prepare_from_student(model)

    def prepare_from_teacher(self, model: nn.Module) -> None:
        check_recorder_sources(self.teacher_recorders, model, 'teacher')
        super().prepare_from_teacher(model)

    def _check_loss_forward_mappings(self, losses, loss_forward_mappings,
                                     student_recorders,
                                     teacher_recorders) -> None:
        recorder_mappings = {}
        for loss_name, mapping in loss_forward_mappings.items():
            if loss_name not in losses:
                raise KeyError(
                    f'loss_forward_mappings names "{loss_name}", which is not '
                    f'in distill_losses {list(losses.keys())}')
            recorder_mappings[loss_name] = {}
            # MMRazor checks argument names only for recorder entries (and
            # connectors with a bare assert): check every entry here.
            params = list(signature(losses[loss_name].forward).parameters)
            for key, record in mapping.items():
                if key not in params:
                    raise KeyError(
                        f'{loss_name}.{key}: {type(losses[loss_name]).__name__}'
                        f'.forward has no argument {key!r}; its arguments '
                        f'are {params}')
                conn = record.get('connector')
                if conn is not None and conn not in self.connectors:
                    raise KeyError(
                        f'{loss_name}.{key}: connector "{conn}" does not '
                        f'exist in connectors {list(self.connectors.keys())}')
                if 'from_data' in record:
                    if record['from_data'] not in DATA_KEYS:
                        raise KeyError(
                            f'{loss_name}.{key}: from_data must be one of '
                            f'{DATA_KEYS}, got {record["from_data"]!r}')
                    continue
                recorders = (student_recorders if record.get('from_student')
                             else teacher_recorders)
                name = record.get('recorder')
                if name not in recorders.recorders:
                    side = ('student' if record.get('from_student') else
                            'teacher')
                    raise KeyError(
                        f'{loss_name}.{key}: recorder "{name}" does not exist '
                        f'in {side}_recorders '
                        f'{list(recorders.recorders.keys())}')
                recorder_mappings[loss_name][key] = record
        super()._check_loss_forward_mappings(losses, recorder_mappings,
                                             student_recorders,
                                             teacher_recorders)

    def compute_distill_losses(
            self,
            batch_data: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        """Compute every configured loss.

        Args:
            batch_data (dict, optional): ``{'gt_sem_seg': (N, H, W) int64}``.
                Defaults to the data of an enclosing :meth:`with_batch_data`.

        Returns:
            dict: ``{loss_name: scalar}`` plus detached diagnostics.
        """
        if batch_data is None:
            batch_data = self._batch_data
        losses = {}
        for loss_name, mapping in self.loss_forward_mappings.items():
            kwargs = {}
            for key, record in mapping.items():
                if 'from_data' in record:
                    if record['from_data'] not in batch_data:
                        raise KeyError(
                            f'{loss_name} needs {record["from_data"]!r} but '
                            'the algorithm passed no such batch data')
                    kwargs[key] = batch_data[record['from_data']]
                else:
                    kwargs[key] = self.get_record(**record)
            loss_module = self.distill_losses[loss_name]
            losses[loss_name] = loss_module(**kwargs)
            stats = getattr(loss_module, 'last_stats', None) or {}
            prefix = loss_name.replace('loss', '').strip('_') or 'distill'
            for stat, value in stats.items():
                losses[f'{prefix}_{stat}'] = value.detach()
        return losses

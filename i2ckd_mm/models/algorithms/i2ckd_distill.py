"""Single-teacher distillation with a truly frozen teacher and labels."""
import contextlib
import types
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from mmengine.structures import BaseDataElement
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.models.utils import add_prefix
from mmrazor.registry import MODELS
from torch import Tensor

from ..distillers.gt_aware_distiller import GTAwareDistiller
from ..losses import I2CKDLoss, bad_label_message
from .step_check import clean_labels, first_trainable, reduce_status
from ...checkpoint import load_teacher_checkpoint


@contextlib.contextmanager
def preserved_rng_state():
    """Restore torch's CPU (and, once initialised, CUDA) random state on exit.

    Whatever runs inside draws random numbers without changing those drawn
    after it: the student of a distillation run then starts from, and trains
    with, the same random numbers as the student trained alone.
    """
    cpu = torch.get_rng_state()
    cuda = (torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized() else
            None)
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


#: ``teacher_precision`` values and the autocast dtype each runs the teacher
#: under (None: no autocast of its own).
TEACHER_PRECISIONS = {
    'fp32': None,
    'bf16': torch.bfloat16,
    'fp16': torch.float16,
}


def as_loss_input(data: Any, fp32: bool) -> Any:
    """``data`` with every floating-point tensor contiguous and, with
    ``fp32``, float32, in the same (nested list / tuple / dict) structure.

    A tensor that already is so is returned as it is (no copy); integer and
    bool tensors and non-tensors are returned unchanged.
    """
    if isinstance(data, Tensor):
        if data.is_floating_point():
            # one copy does both: the dtype and, after a channels_last
            # teacher, the layout the losses saw before these options
            return data.to(torch.float32 if fp32 else data.dtype,
                           memory_format=torch.contiguous_format)
        return data
    if isinstance(data, (list, tuple)):
        return type(data)(as_loss_input(x, fp32) for x in data)
    if isinstance(data, dict):
        return type(data)(
            (k, as_loss_input(v, fp32)) for k, v in data.items())
    return data


def cpu_has_fast_bf16() -> Optional[bool]:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), which
    oneDNN's fast bf16 convolutions need; None where torch cannot tell.

    torch has no public probe (2.13); ``torch.cpu``'s private ones are used,
    and a missing probe only means no warning, never another computation.
    """
    probes = [getattr(torch.cpu, name, None) for name in (
        '_is_avx512_bf16_supported', '_is_amx_tile_supported')]
    if None in probes:
        return None
    return any(probe() for probe in probes)


@MODELS.register_module()
class I2CKDDistill(SingleTeacherDistill):
    """Distill an MMSeg student from a frozen MMSeg teacher, with labels.

    Differs from MMRazor's ``SingleTeacherDistill`` where I2CKD needs it:

    * the teacher is frozen and *fully* in eval mode (Dropout off, BN
      frozen) whatever ``train()`` is called with;
    * the teacher runs in ``mode='tensor'`` under ``no_grad``: its features
      are recorded but it computes no segmentation loss;
    * the ground truth is stacked once to ``N x H x W`` (int64) and handed to
      a :class:`GTAwareDistiller`, whose losses take it via
      ``dict(from_data='gt_sem_seg')``;
    * the teacher checkpoint is loaded with ``weights_only=True`` unless
      ``teacher_ckpt_trusted=True``, strictly, with errors that name a missing
      file or mismatched keys;
    * same seed, same start: the student is built first and initialised
      first, and building/initialising the teacher and the connectors does
      not consume the random numbers the student run would use next. With
      the same ``randomness.seed`` the distilled student starts from the
      same weights as the student trained alone (same config) and draws the
      same dropout masks, so a comparison of the two measures distillation,
      not initialisation luck;
    * the number of classes is written once, in the student: every
      :class:`I2CKDLoss` without ``num_classes`` gets the student's
      ``decode_head.num_classes``, and building stops with one message
      naming all three numbers if the student, the teacher
      (``decode_head.num_classes``) and a ``num_classes`` given to a loss
      disagree;
    * bad input stops the step in the iteration that saw it, before its
      backward, on every rank (:meth:`check_step`, one all_reduce and one
      wait per step): label ids that are neither a class nor the ignore
      index (replaced by the ignore index on the labels' device before any
      loss, the student's included, indexes with them) raise the
      I2CKD loss's ValueError; NaN/Inf at a labelled pixel of an I2CKD
      loss's features, or a NaN/Inf distill loss, raise FloatingPointError,
      or, under AMP, make the ``GradScaler`` skip the step
      (``docs/method.md``, "When bad input stops a run").

    Optionally the teacher costs less (``teacher_precision``,
    ``teacher_channels_last``): its forward runs under ``torch.autocast`` of
    a 16-bit dtype on the device it computes on, and what its recorders
    (and deliveries) kept is cast to float32 before a loss or the student
    sees it. The student's forward is outside that autocast: under an AMP
    optimizer wrapper it runs in the wrapper's autocast, otherwise in
    float32, exactly as with the default.

    Args:
        distiller (dict): A :class:`GTAwareDistiller` config.
        teacher (dict | BaseModel): The teacher MMSeg segmentor.
        teacher_ckpt (str, optional): Path or URL of the teacher weights.
        teacher_ckpt_trusted (bool): Fully unpickle the teacher checkpoint.
            Defaults to False.
        teacher_precision (str): ``'fp32'`` (default): the teacher's forward
            gets no autocast of its own (float32, or the AMP wrapper's
            autocast in an AMP run: the behaviour before this option).
            ``'bf16'`` / ``'fp16'``: it runs under ``torch.autocast`` of
            that dtype on its device type (CPU autocast takes both in
            torch >= 2.3, but fp16 convolutions are very slow on CPUs, and
            bf16 ones on CPUs without AVX512-BF16 or AMX: a warning says
            so), nested inside an AMP autocast if there is one;
            a device whose autocast refuses the dtype raises a
            RuntimeError at the first step instead of running in float32.
            The recorded teacher tensors are then cast to (contiguous)
            float32: the losses compute in float32 as with the default.
        teacher_channels_last (bool): Keep the teacher's weights and its
            input in ``torch.channels_last`` memory format (cuDNN/oneDNN
            convolutions may be faster so; recorded tensors are made
            contiguous again). Defaults to False.
        compile_losses (bool | dict): Compile the distillation losses with
            ``torch.compile``: False (default) runs them eagerly; True
            compiles with torch's defaults (inductor); a dict is passed to
            ``torch.compile`` as keyword arguments (e.g.
            ``dict(mode='reduce-overhead')`` for CUDA graphs where inductor
            can use them, ``dict(backend='aot_eager')``). What is compiled
            is a loss's ``compute`` (:class:`I2CKDLoss`: the loss and its
            status, so reading the status stays outside the compiled code)
            or, for a loss without one, its ``forward``.
        **kwargs: ``architecture`` (the student), ``data_preprocessor``,
            ``calculate_student_loss`` etc. as in ``SingleTeacherDistill``.
    """

    def __init__(self,
                 distiller: dict,
                 teacher,
                 teacher_ckpt: Optional[str] = None,
                 teacher_ckpt_trusted: bool = False,
                 teacher_precision: str = 'fp32',
                 teacher_channels_last: bool = False,
                 compile_losses: Union[bool, dict] = False,
                 **kwargs) -> None:
        if kwargs.pop('teacher_trainable', False):
            raise ValueError('I2CKDDistill keeps the teacher frozen; '
                             'teacher_trainable=True is not supported')
        if teacher_precision not in TEACHER_PRECISIONS:
            raise ValueError(
                'I2CKDDistill: teacher_precision must be one of '
                f'{sorted(TEACHER_PRECISIONS)}, got {teacher_precision!r}')
        if not isinstance(teacher_channels_last, bool):
            raise ValueError(
                'I2CKDDistill: teacher_channels_last must be True or False, '
                f'got {teacher_channels_last!r}')
        if not isinstance(compile_losses, (bool, dict)):
            raise TypeError(
                'I2CKDDistill: compile_losses must be True, False or a dict '
                f'of torch.compile arguments, got {compile_losses!r}')
        self.teacher_precision = teacher_precision
        self.teacher_channels_last = teacher_channels_last
        self._cpu_speed_checked = False
        # set by loss() for parse_losses() of the same step (check_step)
        self._skip_step = False
        # Same start as the student alone (see the class docstring): build the
        # student first, then build everything else without touching the
        # random numbers that follow the student's construction.
        if isinstance(kwargs.get('architecture'), dict):
            kwargs['architecture'] = MODELS.build(kwargs['architecture'])
        with preserved_rng_state():
            super().__init__(distiller, teacher, teacher_ckpt=None, **kwargs)
        if not isinstance(self.distiller, GTAwareDistiller):
            raise TypeError('I2CKDDistill needs a GTAwareDistiller, got '
                            f'{type(self.distiller).__name__}')
        self._set_loss_num_classes()
        for loss in self._i2ckd_losses().values():
            loss.defer_checks = True  # check_step reads them once a step
        self._label_spec = self._label_check_spec()
        self.compile_losses = compile_losses
        if compile_losses is not False:
            self._compile_losses(
                {} if compile_losses is True else dict(compile_losses))
        self.teacher_ckpt = teacher_ckpt
        if not teacher_ckpt:
            warnings.warn(
                'I2CKDDistill: no teacher_ckpt given; the teacher keeps the '
                'weights it was built with (random unless its config loads '
                'pretrained weights). Set model.teacher_ckpt to distill from '
                'a trained teacher.')
        else:
            load_teacher_checkpoint(self.teacher, teacher_ckpt,
                                    teacher_ckpt_trusted)
            # keep init_weights() from overwriting the loaded weights
            self.teacher._is_init = True
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        if teacher_channels_last:
            # 4-D weights only; later .to(device) and load_state_dict keep
            # the format (preserve_format, copy_ into the parameter)
            self.teacher.to(memory_format=torch.channels_last)

    def _set_loss_num_classes(self) -> None:
        """Give every I2CKDLoss the student's class count; check that the
        student, the teacher and any count given to a loss agree."""

        def head_classes(model):
            head = getattr(model, 'decode_head', None)
            return getattr(head, 'num_classes', None)

        student, teacher = head_classes(self.student), head_classes(
            self.teacher)
        losses = {
            name: loss
            for name, loss in self.distiller.distill_losses.items()
            if isinstance(loss, I2CKDLoss)
        }
        counts = {
            'student decode_head.num_classes': student,
            'teacher decode_head.num_classes': teacher,
        }
        counts.update({
            f'{name}.num_classes (loss config)': loss.num_classes
            for name, loss in losses.items()
        })
        known = {k for k in counts.values() if k is not None}
        if len(known) > 1:
            listed = ', '.join(f'{where} = {k}'
                               for where, k in counts.items())
            raise ValueError(
                f'I2CKDDistill: the class counts disagree: {listed}. Student '
                'and teacher must be trained on the same classes (set '
                'num_classes of both heads to the dataset\'s class count); '
                'leave num_classes out of the loss config and it is taken '
                'from the student.')
        for name, loss in losses.items():
            if loss.num_classes is None:
                if student is None:
                    raise ValueError(
                        f'I2CKDDistill: cannot take num_classes for {name!r} '
                        'from the student: it has no decode_head.num_classes '
                        f'({type(self.student).__name__}). Set num_classes '
                        'in the loss config.')
                loss.set_num_classes(student)

    def _label_check_spec(self) -> Optional[Tuple[int, int]]:
        """``(num_classes, ignore_index)`` of the step's label check: the
        student's class count and the ignore index that the I2CKD losses
        and the student's decode head share (an error if they differ: a bad
        id replaced by one of them would be a bad id for another). None (no
        check) when the class count is unknown."""
        head = getattr(self.student, 'decode_head', None)
        losses = self._i2ckd_losses()
        counts = [getattr(head, 'num_classes', None)] + [
            loss.num_classes for loss in losses.values()]
        num_classes = next((k for k in counts if k is not None), None)
        if num_classes is None:
            return None
        ignores = {
            f'{name}.ignore_index': loss.ignore_index
            for name, loss in losses.items()
        }
        if getattr(head, 'ignore_index', None) is not None:
            ignores['student decode_head.ignore_index'] = head.ignore_index
        if len(set(ignores.values())) > 1:
            listed = ', '.join(f'{k} = {v}' for k, v in ignores.items())
            raise ValueError(
                f'I2CKDDistill: the ignore indices disagree: {listed}; the '
                'labels have one ignore index, set it in both')
        return num_classes, next(iter(ignores.values()), 255)

    def _compile_losses(self, options: dict) -> None:
        """Replace each distill loss's ``compute`` (or ``forward``) by its
        ``torch.compile`` d version, with ``options``.

        The class's function is compiled and bound to the instance
        (``types.MethodType``), not the bound method: ``copy.deepcopy``
        (e.g. MMEngine's EMA of the model) then binds the copy to the copied
        loss instead of calling the original one.
        """
        for loss in self.distiller.distill_losses.values():
            name = 'compute' if callable(
                getattr(loss, 'compute', None)) else 'forward'
            compiled = torch.compile(getattr(type(loss), name), **options)
            setattr(loss, name, types.MethodType(compiled, loss))

    def init_weights(self) -> None:
        """Initialise the student first, as a student-alone run would, then
        the connectors (and an unloaded teacher) without consuming the
        random numbers that follow the student's initialisation."""
        if not getattr(self.student, 'is_init', False):
            self.student.init_weights()
        with preserved_rng_state():
            super().init_weights()

    def train(self, mode: bool = True):
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    @staticmethod
    def stack_labels(batch_inputs: Tensor,
                     data_samples: List[BaseDataElement]) -> Tensor:
        """Labels of the batch as one ``N x H x W`` int64 tensor."""
        if batch_inputs.shape[0] == 0:
            raise ValueError('I2CKDDistill: empty batch (0 images); check the '
                             'dataloader (batch_size, drop_last, dataset size)')
        if not data_samples or len(data_samples) != batch_inputs.shape[0]:
            raise ValueError(
                f'I2CKDDistill: {batch_inputs.shape[0]} inputs but '
                f'{len(data_samples or [])} data samples with labels')
        gts = []
        for i, sample in enumerate(data_samples):
            if 'gt_sem_seg' not in sample:
                raise KeyError(f'data sample {i} has no gt_sem_seg')
            gts.append(sample.gt_sem_seg.data.reshape(
                sample.gt_sem_seg.data.shape[-2:]))
        if len({tuple(g.shape) for g in gts}) != 1:
            raise ValueError('I2CKDDistill: labels of one batch differ in '
                             f'size: {[tuple(g.shape) for g in gts]}')
        gt = torch.stack(gts).long()
        if gt.shape[-2:] != batch_inputs.shape[-2:]:
            raise ValueError(
                f'I2CKDDistill: label size {tuple(gt.shape[-2:])} does not '
                f'match the input size {tuple(batch_inputs.shape[-2:])}; the '
                'data preprocessor should pad labels with the inputs')
        return gt

    @contextlib.contextmanager
    def teacher_autocast(self, device_type: str):
        """The autocast the teacher's forward runs under (``'fp32'``: none,
        whatever autocast is active stays as it is)."""
        dtype = TEACHER_PRECISIONS[self.teacher_precision]
        if dtype is None:
            yield
            return
        with torch.autocast(device_type, dtype=dtype):
            # torch.autocast only warns and runs unautocast when a device
            # type does not take the dtype: that would be a float32 teacher
            # under a bf16/fp16 name, so stop here instead.
            if not (torch.is_autocast_enabled(device_type)
                    and torch.get_autocast_dtype(device_type) == dtype):
                raise RuntimeError(
                    f'I2CKDDistill: teacher_precision='
                    f'{self.teacher_precision!r} needs torch.autocast with '
                    f'{dtype} on {device_type!r}, which this torch '
                    f'({torch.__version__}) does not enable there; use '
                    "teacher_precision='fp32' or another device")
            if device_type == 'cpu' and not self._cpu_speed_checked:
                # once: the CPU's instructions do not change between steps
                self._cpu_speed_checked = True
                self._warn_if_slow_on_cpu(dtype)
            yield

    def _warn_if_slow_on_cpu(self, dtype: torch.dtype) -> None:
        """Say when the teacher's 16-bit autocast runs, correctly but much
        slower than float32, on this CPU's kernels."""
        if dtype == torch.float16:
            # torch has no fast fp16 CPU convolution: measured 75x slower
            # than fp32 (R101, 128x256)
            warnings.warn(
                "I2CKDDistill: teacher_precision='fp16' on a CPU runs "
                'the teacher through slow fp16 kernels (about 75x the '
                "fp32 time in benchmarks/results_step_cost.md); 'bf16' "
                'is the fast 16-bit choice on CPUs with AVX512-BF16 or AMX')
        elif cpu_has_fast_bf16() is False:
            # without native bf16 the convolutions emulate it: measured 37x
            # slower than fp32 (toy teacher, 64x64, batch 8, an AVX2 CPU)
            warnings.warn(
                "I2CKDDistill: teacher_precision='bf16' on a CPU without "
                'AVX512-BF16 or AMX runs the teacher through slow emulated '
                'bf16 kernels (about 37x the fp32 time in '
                "benchmarks/results_step_cost.md); use 'fp32' on this CPU")

    def teacher_forward(self, batch_inputs: Tensor,
                        data_samples: Optional[List[BaseDataElement]],
                        forward: Optional[Callable] = None) -> None:
        """Run the frozen teacher in ``mode='tensor'`` (features only, no
        loss), in ``teacher_precision`` (and channels_last); leave float32
        records behind when it ran under an autocast of its own.

        Args:
            batch_inputs (Tensor): The preprocessed batch (N, 3, H, W).
            data_samples (list, optional): Its data samples.
            forward (callable, optional): None (default): the teacher is
                called with its recorders and deliveries on and autograd
                off, as a step runs it. :meth:`loss` passes the teacher's
                own ``forward`` instead, from inside MMRazor's ``loss()``,
                which has turned those on already (entering them twice
                would undo MMRazor's function deliveries).
        """
        inputs = batch_inputs
        if self.teacher_channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if forward is None:
            with self.distiller.teacher_recorders, self.distiller.deliveries:
                with torch.no_grad(), self.teacher_autocast(
                        inputs.device.type):
                    self.teacher(inputs, data_samples, mode='tensor')
        else:
            with self.teacher_autocast(inputs.device.type):
                forward(inputs, data_samples, mode='tensor')
        fp32 = self.teacher_precision != 'fp32'
        if not (fp32 or self.teacher_channels_last):
            return  # the records are what they always were
        for recorder in self.distiller.teacher_recorders.recorders.values():
            buffer = recorder.data_buffer  # the recorder's own list
            buffer[:] = [as_loss_input(x, fp32) for x in buffer]
        for delivery in self.distiller.deliveries.deliveries.values():
            # outputs the teacher hands to the student's forward
            queue = delivery.data_queue
            kept = [as_loss_input(x, fp32) for x in queue]
            queue.clear()
            queue.extend(kept)

    @contextlib.contextmanager
    def _teacher_as_feature_extractor(self):
        """Within the context, calling the teacher runs
        :meth:`teacher_forward` (nothing once distillation stopped).

        MMRazor's ``SingleTeacherDistill.loss`` calls the frozen teacher
        with ``mode='loss'`` and has no hook to change that; an instance
        attribute ``forward`` stands in for the class's for the duration of
        one ``loss()`` call (``nn.Module.__call__`` looks it up there), so
        the teacher's forward hooks and recorders still run."""
        teacher = self.teacher
        shadowed = teacher.__dict__.get('forward')
        own_forward = teacher.forward

        def forward(inputs, data_samples=None, mode='tensor'):
            if not self.distillation_stopped:
                self.teacher_forward(inputs, data_samples, own_forward)

        teacher.forward = forward
        try:
            yield
        finally:
            if shadowed is None:
                del teacher.forward
            else:
                teacher.forward = shadowed

    def _i2ckd_losses(self) -> Dict[str, I2CKDLoss]:
        return {
            name: loss
            for name, loss in self.distiller.distill_losses.items()
            if isinstance(loss, I2CKDLoss)
        }

    def loss(self,
             batch_inputs: Tensor,
             data_samples: Optional[List[BaseDataElement]] = None
             ) -> Dict[str, Tensor]:
        """MMRazor's ``SingleTeacherDistill.loss`` (student task losses
        ``student.*`` + distill losses ``distill.*``), with the teacher run
        by :meth:`teacher_forward`, the labels stacked once for the losses,
        then :meth:`check_step`.

        Under an autocast (an AMP optimizer wrapper's) the result also
        holds ``distill.amp_skipped``: 1.0 for a step that
        :meth:`check_step` turned into a skipped one, else 0.0.
        """
        gt = self.stack_labels(batch_inputs, data_samples)
        labels = gt.new_zeros(2)  # the label check's status (none: clear)
        if self._label_spec is not None:
            # before any loss sees them; no wait (check_step reads it)
            gt, labels = clean_labels(gt, *self._label_spec)
            for i, sample in enumerate(data_samples):
                sample.gt_sem_seg.data = gt[i].unsqueeze(0)
        for loss in self._i2ckd_losses().values():
            loss.take_status()  # left by a step that raised before its check
        with self.distiller.with_batch_data(gt_sem_seg=gt), \
                self._teacher_as_feature_extractor():
            losses = super().loss(batch_inputs, data_samples)
        amp = torch.is_autocast_enabled(gt.device.type)
        self._skip_step = self.check_step(losses, labels, amp)
        if amp:
            losses['distill.amp_skipped'] = torch.full(
                (), float(self._skip_step), device=gt.device)
        return losses

    def check_step(self, losses: Dict[str, Tensor], labels: Tensor,
                   amp: bool = False) -> bool:
        """Stop or skip a step with bad input, on every rank alike.

        Merges what the step found (the label ids :func:`clean_labels`
        replaced, each I2CKD loss's status, whether each distill loss value
        is finite), takes the maximum over the ranks when distributed (one
        all_reduce) and reads it (one wait), so every rank decides the
        same, before any backward.

        Args:
            losses (dict): What :meth:`loss` computed.
            labels (Tensor): The (2,) status of :func:`clean_labels`, on
                the step's device.
            amp (bool): Whether the step runs under an autocast (AMP).

        Returns:
            bool: True when the step must be skipped: under AMP, a NaN/Inf
            at a labelled pixel of an I2CKD loss's features or a NaN/Inf
            distill loss. :meth:`parse_losses` then makes the step's
            gradient non-finite, so that the AMP wrapper's ``GradScaler``
            skips the optimizer step as it does for an fp16 overflow.

        Raises:
            ValueError: Label ids that are neither a class nor the ignore
                index, on any rank (the I2CKD loss's message, naming the
                smallest and largest such id).
            FloatingPointError: Outside AMP, NaN/Inf at a labelled pixel of
                an I2CKD loss with ``nonfinite='raise'`` (its message), or a
                NaN/Inf distill loss, on any rank.
        """
        i2ckd = self._i2ckd_losses()
        clear = labels.new_zeros(len(I2CKDLoss.STATUS_CLEAR))
        parts = [labels]
        for loss in i2ckd.values():
            status = loss.take_status()
            parts.append(clear if status is None else status)
        values = {
            name: losses[f'distill.{name}']
            for name in self.distiller.distill_losses
            if f'distill.{name}' in losses
        }
        if values:
            parts.append(~torch.isfinite(torch.stack(
                [v.detach().float().sum() for v in values.values()])))
        status = reduce_status(parts)
        if any(status[:2]):
            ids = [i for i in (-status[0], status[1]) if i]
            raise ValueError(bad_label_message(ids, *self._label_spec))
        skip = False
        rows = status[2:]
        width = len(I2CKDLoss.STATUS_CLEAR)
        for i, loss in enumerate(i2ckd.values()):
            row = rows[i * width:(i + 1) * width]
            if amp:  # labels raise; a NaN/Inf skips the step
                loss.raise_for_status(row[:2] + [0] * (width - 2))
                skip = skip or any(row[2:])
            else:  # 'raise' raises; 'skip' keeps its zero loss
                loss.raise_for_status(row)
        flags = rows[len(i2ckd) * width:]
        nonfinite = [name for name, f in zip(values, flags) if f]
        if nonfinite and not amp:
            raise FloatingPointError(
                f'I2CKDDistill: the distillation loss {nonfinite} is NaN or '
                'Inf in this step (outside AMP, such a step stops the run '
                'before its backward)')
        return skip or bool(nonfinite)

    def parse_losses(self, losses: Dict[str, Tensor]):
        """MMEngine's ``parse_losses``; for a step :meth:`check_step` marked
        to skip, the summed loss also gets a term whose gradient is NaN
        (its value too: the logged values stay those of :meth:`loss`), so
        the AMP wrapper's ``GradScaler`` finds a non-finite gradient and
        skips the optimizer step. Under DDP the wrapper calls this method
        on the algorithm as well."""
        loss, log_vars = super().parse_losses(losses)
        if getattr(self, '_skip_step', False):
            self._skip_step = False
            param = first_trainable([self.student, self.distiller])
            if param is not None:
                loss = loss + float('nan') * param.reshape(-1)[0]
        return loss, log_vars

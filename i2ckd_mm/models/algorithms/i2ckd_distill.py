"""Single-teacher distillation with a truly frozen teacher and labels."""
import contextlib
import types
import warnings
from typing import Any, Dict, List, Optional, Union

import torch
from mmengine.structures import BaseDataElement
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.models.utils import add_prefix
from mmrazor.registry import MODELS
from torch import Tensor

from ..distillers.gt_aware_distiller import GTAwareDistiller
from ..losses import I2CKDLoss
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
      disagree.

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
        # False after a loss() call that no train_step() checked yet
        self._losses_checked = True
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
                        data_samples: Optional[List[BaseDataElement]]
                        ) -> None:
        """Run the frozen teacher (``no_grad``, ``mode='tensor'``) with its
        recorders and deliveries on, in ``teacher_precision`` (and
        channels_last); leave float32 records behind when it ran under an
        autocast of its own."""
        inputs = batch_inputs
        if self.teacher_channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self.distiller.teacher_recorders, self.distiller.deliveries:
            with torch.no_grad(), self.teacher_autocast(inputs.device.type):
                self.teacher(inputs, data_samples, mode='tensor')
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

    def loss(self,
             batch_inputs: Tensor,
             data_samples: Optional[List[BaseDataElement]] = None
             ) -> Dict[str, Tensor]:
        """Student task losses (``student.*``) + distill losses
        (``distill.*``), each under its own key.

        First reports any distill-loss error still pending from an earlier
        step (:meth:`check_losses`): under MMEngine's DDP wrapper, whose
        ``train_step`` does not call :meth:`train_step`, an error is so
        reported at the start of the next iteration, before its teacher
        forward (after :meth:`train_step`, which checked already, this
        reads nothing and waits for nothing).
        """
        if not self._losses_checked:
            self.check_losses()
        self._losses_checked = False
        gt = self.stack_labels(batch_inputs, data_samples)
        losses = dict()
        distill = not self.distillation_stopped
        if distill:  # after a stop, the teacher's forward is not needed
            self.distiller.set_deliveries_override(False)
            self.teacher_forward(batch_inputs, data_samples)

        self.distiller.set_deliveries_override(True)
        with self.distiller.student_recorders, self.distiller.deliveries:
            if self.calculate_student_loss:
                student_losses = self.student(
                    batch_inputs, data_samples, mode='loss')
                losses.update(add_prefix(student_losses, 'student'))
            elif self.student_trainable:
                self.student(batch_inputs, data_samples, mode='tensor')
            else:
                with torch.no_grad():
                    self.student(batch_inputs, data_samples, mode='tensor')

        if distill:
            distill_losses = self.distiller.compute_distill_losses(
                dict(gt_sem_seg=gt))
            losses.update(add_prefix(distill_losses, 'distill'))
        return losses

    def check_losses(self) -> None:
        """Raise the deferred input errors of the distillation losses.

        ``I2CKDLoss`` never waits for the device during the step: it leaves
        a small status on the device (bad label ids, NaN/Inf at a labelled
        pixel), and its ``check()`` reads it. Every distill loss with a
        ``check`` method is checked here.
        """
        self._losses_checked = True
        for loss_module in self.distiller.distill_losses.values():
            check = getattr(loss_module, 'check', None)
            if callable(check):
                check()

    def train_step(self, data, optim_wrapper) -> Dict[str, Tensor]:
        """MMEngine's train step, then :meth:`check_losses`.

        The check reads the losses' device status right after the optimizer
        step, where MMEngine reads the loss values for logging anyway (a
        wait for the device in every iteration), so it adds no wait of its
        own; an error stops the run in the iteration it happened in. (Under
        MMEngine's DDP wrapper this method is not called; :meth:`loss`
        checks at the start of the next iteration instead.) That
        iteration's I2CKD contribution was zero (bad label ids count as
        ignored, a NaN/Inf step gives a zero loss and gradient), so the
        weights it updated carry nothing of the bad input.
        """
        log_vars = super().train_step(data, optim_wrapper)
        self.check_losses()
        return log_vars

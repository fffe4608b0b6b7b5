"""Iteration-based warm-up and stop of distillation loss weights."""
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmrazor.registry import HOOKS

_OPTIONS = ('warmup_iters', 'stop_iter', 'start_factor', 'weight')


def scheduled_weight(base: float,
                     it: int,
                     warmup_iters: int = 0,
                     stop_iter: Optional[int] = None,
                     start_factor: float = 0.0) -> float:
    """Loss weight of the 0-based iteration ``it``.

    ``base * (start_factor + (1 - start_factor) * it / warmup_iters)`` for
    ``it < warmup_iters``, ``base`` afterwards, and ``0`` from ``stop_iter``
    on (the same linear rule as MMEngine's ``LinearLR``).

    Args:
        base (float): The full weight.
        it (int): Index of the iteration about to run (``runner.iter``).
        warmup_iters (int): Length of the linear warm-up; 0 disables it.
        stop_iter (int, optional): First iteration without this loss.
        start_factor (float): Fraction of ``base`` at iteration 0.

    Returns:
        float: The weight.
    """
    if stop_iter is not None and it >= stop_iter:
        return 0.0
    if warmup_iters > 0 and it < warmup_iters:
        return base * (start_factor + (1.0 - start_factor) * it / warmup_iters)
    return base


@HOOKS.register_module()
class DistillLossWeightScheduleHook(Hook):
    """Warm up and stop distillation losses by *iteration*.

    MMRazor's ``StopDistillHook`` counts epochs, so it never fires in the
    iteration-based loops MMSeg uses. Before every training iteration this
    hook sets ``loss_weight`` of each named loss in
    ``model.distiller.distill_losses`` from ``runner.iter`` alone (see
    :func:`scheduled_weight`), so a resumed run gets exactly the weights of
    an uninterrupted one without any saved state. Once *every* distill loss
    of the distiller is past its ``stop_iter`` the algorithm's
    ``distillation_stopped`` flag is set, so the losses are no longer
    computed (with DDP this needs ``find_unused_parameters=True``, as the
    connectors then get no gradient). The current weights are logged as
    ``{loss_name}_weight``.

    Args:
        losses (dict): ``{loss_name: dict(warmup_iters=0, stop_iter=None,
            start_factor=0.0, weight=None)}``; ``loss_name`` is a key of the
            distiller's ``distill_losses``. ``weight`` defaults to the loss
            module's configured ``loss_weight``.

    Example (the hook is in MMRazor's registry; MMSeg recipes set
    ``default_scope='mmseg'``, hence the ``mmrazor.`` prefix)::

        custom_hooks = [
            dict(type='mmrazor.DistillLossWeightScheduleHook',
                 losses=dict(loss_i2ckd=dict(warmup_iters=500,
                                             stop_iter=30000)))
        ]
    """

    priority = 'NORMAL'

    def __init__(self, losses: Dict[str, dict]) -> None:
        if not isinstance(losses, dict) or not losses:
            raise TypeError('DistillLossWeightScheduleHook: losses must be a '
                            'non-empty dict of per-loss options, got '
                            f'{losses!r}')
        self.schedules = {}
        self._explicit: Dict[str, float] = {}
        for name, opts in losses.items():
            opts = dict(opts or {})
            unknown = set(opts) - set(_OPTIONS)
            if unknown:
                raise KeyError(f'DistillLossWeightScheduleHook: {name}: '
                               f'unknown options {sorted(unknown)}; allowed '
                               f'are {list(_OPTIONS)}')
            warmup = int(opts.get('warmup_iters', 0))
            stop = opts.get('stop_iter')
            start = float(opts.get('start_factor', 0.0))
            if warmup < 0 or not 0.0 <= start <= 1.0:
                raise ValueError(f'DistillLossWeightScheduleHook: {name}: '
                                 'need warmup_iters >= 0 and 0 <= '
                                 f'start_factor <= 1, got {warmup}, {start}')
            if stop is not None and int(stop) < 0:
                raise ValueError(f'DistillLossWeightScheduleHook: {name}: '
                                 f'stop_iter must be >= 0, got {stop}')
            self.schedules[name] = dict(
                warmup_iters=warmup,
                stop_iter=None if stop is None else int(stop),
                start_factor=start)
            if opts.get('weight') is not None:
                self._explicit[name] = float(opts['weight'])
        #: Full weight of every scheduled loss, read once from the model.
        self.base_weights: Dict[str, float] = {}

    @staticmethod
    def _algorithm(runner):
        model = runner.model
        # DDP/FSDP wrappers hold the algorithm in .module
        if is_model_wrapper(model):
            model = model.module
        return model

    def _losses(self, runner):
        model = self._algorithm(runner)
        distiller = getattr(model, 'distiller', None)
        losses = getattr(distiller, 'distill_losses', None)
        if losses is None:
            raise TypeError(
                'DistillLossWeightScheduleHook needs a distillation algorithm '
                'with distiller.distill_losses (e.g. I2CKDDistill), got '
                f'{type(model).__name__}')
        unknown = [n for n in self.schedules if n not in losses]
        if unknown:
            raise KeyError(
                f'DistillLossWeightScheduleHook: unknown loss name(s) '
                f'{unknown}; the distiller has {list(losses.keys())}')
        for name in self.schedules:
            if not hasattr(losses[name], 'loss_weight'):
                raise TypeError(
                    f'DistillLossWeightScheduleHook: {name} '
                    f'({type(losses[name]).__name__}) has no loss_weight')
        return model, losses

    def before_train(self, runner) -> None:
        """Check the names and read the full weights once."""
        _, losses = self._losses(runner)
        for name in self.schedules:
            if name not in self.base_weights:
                self.base_weights[name] = self._explicit.get(
                    name, float(losses[name].loss_weight))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        """Set every scheduled weight for iteration ``runner.iter``."""
        if len(self.base_weights) != len(self.schedules):
            self.before_train(runner)
        model, losses = self._losses(runner)
        it = runner.iter
        for name, sched in self.schedules.items():
            weight = scheduled_weight(self.base_weights[name], it, **sched)
            losses[name].loss_weight = weight
            runner.message_hub.update_scalar(f'train/{name}_weight', weight)
        stops = [self.schedules.get(n, {}).get('stop_iter') for n in losses]
        stopped = all(s is not None and it >= s for s in stops)
        if hasattr(model, 'distillation_stopped'):
            model.distillation_stopped = stopped

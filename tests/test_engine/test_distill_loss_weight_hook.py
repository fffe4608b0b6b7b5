"""DistillLossWeightScheduleHook: per-loss linear warm-up and stop by
iteration, from runner.iter alone. (Through a DDP wrapper: see
tests/test_distributed/test_global_prototypes.py; in a real resumed Runner
run: tests/test_runner/test_resume.py.)"""
from types import SimpleNamespace

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
from mmengine.logging import MessageHub
from mmengine.registry import HOOKS as ENGINE_HOOKS
from mmengine.registry import DefaultScope
from mmrazor.models.losses import ChannelWiseDivergence
from mmrazor.registry import HOOKS
from torch import nn

from i2ckd_mm.engine.hooks.distill_loss_weight_hook import (
    DistillLossWeightScheduleHook, scheduled_weight)
from i2ckd_mm.models.losses.i2ckd_loss import I2CKDLoss


class _Algorithm(nn.Module):
    """What the hook touches in I2CKDDistill: distiller.distill_losses and
    distillation_stopped."""

    def __init__(self):
        super().__init__()
        self.distiller = nn.Module()
        self.distiller.distill_losses = nn.ModuleDict(
            dict(loss_i2ckd=I2CKDLoss(19, loss_weight=2.0),
                 loss_cwd=ChannelWiseDivergence(tau=1, loss_weight=3.0)))
        self.distillation_stopped = False


def _runner(model, name):
    return SimpleNamespace(model=model, iter=0,
                           message_hub=MessageHub.get_instance(name))


def _weights(model):
    losses = model.distiller.distill_losses
    return (losses['loss_i2ckd'].loss_weight, losses['loss_cwd'].loss_weight,
            model.distillation_stopped)


def test_scheduled_weight_hand_computed():
    # warm-up of 4 iterations from 0: 0, 1/4, 2/4, 3/4, then full
    assert [scheduled_weight(2.0, i, warmup_iters=4) for i in range(6)] == \
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    # start_factor 0.5: 0.5 + 0.5 * i / 4
    assert [scheduled_weight(4.0, i, 4, start_factor=0.5)
            for i in range(5)] == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert [scheduled_weight(1.0, i, 0, stop_iter=2) for i in range(4)] == \
        [1.0, 1.0, 0.0, 0.0]
    # stop inside the warm-up wins
    assert scheduled_weight(1.0, 3, warmup_iters=10, stop_iter=3) == 0.0


def test_hook_sets_exact_weights_per_loss_and_stops_distillation():
    model = _Algorithm()
    runner = _runner(model, 'weights')
    hook = HOOKS.build(dict(
        type='DistillLossWeightScheduleHook',
        losses=dict(loss_i2ckd=dict(warmup_iters=4, stop_iter=6),
                    loss_cwd=dict(stop_iter=7))))
    hook.before_train(runner)
    seen = {}
    for it in range(9):
        runner.iter = it
        hook.before_train_iter(runner, batch_idx=it)
        seen[it] = _weights(model)
    assert seen == {
        0: (0.0, 3.0, False),
        1: (0.5, 3.0, False),
        2: (1.0, 3.0, False),
        3: (1.5, 3.0, False),
        4: (2.0, 3.0, False),
        5: (2.0, 3.0, False),
        6: (0.0, 3.0, False),  # one loss stopped, the other still runs
        7: (0.0, 0.0, True),   # all stopped: losses no longer computed
        8: (0.0, 0.0, True),
    }
    hub = runner.message_hub
    assert list(hub.get_scalar('train/loss_i2ckd_weight').data[0]) == \
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 0.0, 0.0, 0.0]


def test_unscheduled_loss_keeps_distillation_running():
    model = _Algorithm()
    runner = _runner(model, 'partial')
    hook = DistillLossWeightScheduleHook(
        losses=dict(loss_i2ckd=dict(stop_iter=1)))
    runner.iter = 5
    hook.before_train_iter(runner, batch_idx=5)  # before_train not called
    assert _weights(model) == (0.0, 3.0, False)


def test_weights_depend_only_on_the_iteration():
    """A fresh hook and a fresh model at iteration k (a resumed run) get
    the weights of an uninterrupted run at k."""
    cfg = dict(losses=dict(loss_i2ckd=dict(warmup_iters=10, stop_iter=20)))
    model, hook = _Algorithm(), DistillLossWeightScheduleHook(**cfg)
    runner = _runner(model, 'continuous')
    hook.before_train(runner)
    continuous = {}
    for it in range(25):
        runner.iter = it
        hook.before_train_iter(runner, batch_idx=it)
        continuous[it] = _weights(model)
    for k in (0, 3, 9, 10, 19, 20, 24):
        model2, hook2 = _Algorithm(), DistillLossWeightScheduleHook(**cfg)
        runner2 = _runner(model2, f'resumed{k}')
        runner2.iter = k
        hook2.before_train(runner2)
        hook2.before_train_iter(runner2, batch_idx=k)
        assert _weights(model2) == continuous[k]


def test_explicit_weight_overrides_the_module_weight():
    model = _Algorithm()
    runner = _runner(model, 'explicit')
    hook = DistillLossWeightScheduleHook(
        losses=dict(loss_i2ckd=dict(warmup_iters=2, weight=0.1)))
    for it, expected in ((0, 0.0), (1, 0.05), (2, 0.1)):
        runner.iter = it
        hook.before_train_iter(runner, batch_idx=it)
        assert _weights(model)[0] == pytest.approx(expected, abs=1e-15)


def test_unknown_loss_name_is_named():
    hook = DistillLossWeightScheduleHook(
        losses=dict(loss_i2ckdd=dict(warmup_iters=2)))
    with pytest.raises(KeyError, match=r"unknown loss name\(s\) "
                       r"\['loss_i2ckdd'\].*'loss_i2ckd', 'loss_cwd'"):
        hook.before_train(_runner(_Algorithm(), 'unknown'))


def test_bad_options_and_models():
    with pytest.raises(KeyError, match=r"unknown options \['warmup'\]"):
        DistillLossWeightScheduleHook(losses=dict(loss_i2ckd=dict(warmup=3)))
    with pytest.raises(ValueError, match='warmup_iters >= 0'):
        DistillLossWeightScheduleHook(
            losses=dict(loss_i2ckd=dict(warmup_iters=-1)))
    with pytest.raises(ValueError, match='start_factor'):
        DistillLossWeightScheduleHook(
            losses=dict(loss_i2ckd=dict(start_factor=2.0)))
    with pytest.raises(ValueError, match='stop_iter must be >= 0'):
        DistillLossWeightScheduleHook(
            losses=dict(loss_i2ckd=dict(stop_iter=-5)))
    with pytest.raises(TypeError, match='non-empty dict'):
        DistillLossWeightScheduleHook(losses={})
    hook = DistillLossWeightScheduleHook(losses=dict(loss_i2ckd=dict()))
    with pytest.raises(TypeError, match=r'distiller\.distill_losses.*Conv2d'):
        hook.before_train(_runner(nn.Conv2d(1, 1, 1), 'nodistiller'))


def test_builds_from_mmseg_scoped_configs():
    """MMSeg recipes set default_scope='mmseg'; the hook lives in MMRazor's
    registry and is named with the mmrazor. prefix there."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        hook = ENGINE_HOOKS.build(dict(
            type='mmrazor.DistillLossWeightScheduleHook',
            losses=dict(loss_i2ckd=dict(warmup_iters=500, stop_iter=30000))))
    assert isinstance(hook, DistillLossWeightScheduleHook)
    assert hook.schedules['loss_i2ckd'] == dict(
        warmup_iters=500, stop_iter=30000, start_factor=0.0)

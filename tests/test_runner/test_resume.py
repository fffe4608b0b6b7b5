"""Crash at iteration 3 + resume == an uninterrupted run.

A tiny deterministic MMEngine Runner training of I2CKDDistill (ResNetV1c-18
students/teachers 8/16 channels wide, BN, 32x32 in-memory data, 6
iterations, checkpoint every 3, SGD with momentum, PolyLR, the iteration
weight schedule hook) is interrupted by an exception after iteration 3 and
resumed from the work dir. It must reproduce the uninterrupted run's
iteration count, per-iteration losses, weights, optimizer and scheduler
state. Checkpoints are loaded through i2ckd_mm.checkpoint, with
``weights_only=True`` and the MMEngine types (no full unpickling).
"""
import pickle

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset

from tiny_models import tiny_distill_cfg, tiny_segmentor

NUM_CLASSES = 4
MAX_ITERS = 6
CRASH_AFTER = 3  # iterations done when the crash happens


class _ToySegData(Dataset):
    """8 random 32x32 RGB images with blocky 4-class labels (+ ignore)."""

    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                                    dtype=torch.uint8)
        blocks = torch.randint(0, NUM_CLASSES, (n, 1, 4, 4), generator=g)
        self.labels = blocks.repeat_interleave(8, 2).repeat_interleave(8, 3)
        self.labels[:, :, :2] = 255

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return dict(
            inputs=self.images[i].clone(),
            data_samples=SegDataSample(
                gt_sem_seg=PixelData(data=self.labels[i].clone())))


class _Record(Hook):
    """Logs every iteration's outputs and the scheduled weight."""
    priority = 'LOW'

    def __init__(self):
        self.iters = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        losses = runner.model.distiller.distill_losses
        self.iters[runner.iter] = dict(
            {k: v.detach().clone() for k, v in outputs.items()},
            weight=losses['loss_i2ckd'].loss_weight,
            stopped=runner.model.distillation_stopped)


class _Crash(Hook):
    """Dies after the iteration whose checkpoint was just written."""
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == CRASH_AFTER:
            raise RuntimeError('simulated crash')


def _seg_model(width):
    return tiny_segmentor(
        width, NUM_CLASSES, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4),
        # dropout off: MMEngine does not restore the RNG state on resume
        dropout_ratio=0.0)


def _runner(work_dir, name, hooks, resume=False):
    return Runner(
        model=tiny_distill_cfg(
            student=_seg_model(8), teacher=_seg_model(16),
            num_classes=NUM_CLASSES,
            loss=dict(loss_weight=0.5, pull_weight=0.5), _scope_='mmrazor'),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            batch_size=2, num_workers=0, dataset=_ToySegData(),
            sampler=dict(type='InfiniteSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(
            type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)),
        param_scheduler=[dict(type='PolyLR', eta_min=1e-4, power=0.9,
                              begin=0, end=MAX_ITERS, by_epoch=False)],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=MAX_ITERS,
                       val_interval=1000),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=3),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[
            dict(type='mmrazor.DistillLossWeightScheduleHook',
                 losses=dict(loss_i2ckd=dict(warmup_iters=4, stop_iter=5))),
            *hooks
        ],
        log_processor=dict(by_epoch=False),
        default_scope='mmseg',
        randomness=dict(seed=0),
        resume=resume)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    loads = []  # (path, weights_only) of every torch.load during resume
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        loads.append((str(f), kwargs.get('weights_only')))
        return real_load(f, *args, **kwargs)

    full_rec = _Record()
    full = _runner(tmp_path_factory.mktemp('full'), 'i2ckd_full', [full_rec])
    full.train()

    work_dir = tmp_path_factory.mktemp('crash')
    crash_rec = _Record()
    crashed = _runner(work_dir, 'i2ckd_crash', [crash_rec, _Crash()])
    with pytest.raises(RuntimeError, match='simulated crash'):
        crashed.train()
    resume_rec = _Record()
    resumed = _runner(work_dir, 'i2ckd_resume', [resume_rec], resume=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, 'load', recording_load)
        resumed.train()
    return dict(full=full, full_rec=full_rec, work_dir=work_dir,
                crash_rec=crash_rec, resumed=resumed, resume_rec=resume_rec,
                loads=loads)


def test_crash_left_the_iteration_3_checkpoint(runs):
    assert sorted(runs['crash_rec'].iters) == [0, 1, 2]
    assert (runs['work_dir'] / 'iter_3.pth').is_file()
    assert sorted(runs['resume_rec'].iters) == [3, 4, 5]


def test_same_iteration_count(runs):
    assert runs['full'].iter == runs['resumed'].iter == MAX_ITERS


def test_same_per_iteration_losses_and_weights(runs):
    joined = {**runs['crash_rec'].iters, **runs['resume_rec'].iters}
    full = runs['full_rec'].iters
    assert sorted(joined) == sorted(full) == list(range(MAX_ITERS))
    for it in range(MAX_ITERS):
        assert joined[it].keys() == full[it].keys(), it
        for key, value in full[it].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(joined[it][key], value, rtol=0,
                                           atol=0, msg=f'iter {it} {key}')
            else:
                assert joined[it][key] == value, (it, key)
    # the schedule: warm-up 0, 1/4, 2/4, 3/4 of 0.5, full, then stopped
    assert [full[i]['weight'] for i in range(MAX_ITERS)] == \
        [0.0, 0.125, 0.25, 0.375, 0.5, 0.0]
    assert full[4]['distill.loss_i2ckd'] > 0
    assert 'distill.loss_i2ckd' not in full[5] and full[5]['stopped']


def test_same_weights_optimizer_and_scheduler_state(runs):
    a, b = runs['full'], runs['resumed']
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=0, msg=k)
    oa = a.optim_wrapper.state_dict()
    ob = b.optim_wrapper.state_dict()
    assert oa['param_groups'] == ob['param_groups']
    assert oa['state'].keys() == ob['state'].keys() and oa['state']
    for k in oa['state']:
        torch.testing.assert_close(ob['state'][k]['momentum_buffer'],
                                   oa['state'][k]['momentum_buffer'],
                                   rtol=0, atol=0)
    assert [s.state_dict() for s in a.param_schedulers] == \
        [s.state_dict() for s in b.param_schedulers]


def test_resume_loaded_with_weights_only(runs):
    """Resume read iter_3.pth once, with weights_only=True: MMEngine's
    message hub, optimizer and scheduler state need no full unpickling."""
    assert runs['loads'] == [(str(runs['work_dir'] / 'iter_3.pth'), True)]


def test_checkpoints_need_the_mmengine_types(runs):
    """torch's default allowlist alone refuses MMEngine's message hub; the
    resume above went through i2ckd_mm.checkpoint's scoped allowlist."""
    path = runs['work_dir'] / 'iter_3.pth'
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy'):
        torch.load(path, weights_only=True)

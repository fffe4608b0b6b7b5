"""Bad input stops an I2CKDDistill step before its backward (or, under AMP,
skips it), in the iteration that saw it: label ids that are neither a class
nor ignore, NaN/Inf at a labelled pixel of a feature, a NaN/Inf distill
loss. In one process: the algorithm's train_step, MMEngine's DDP wrapper
(one gloo rank), an AMP optimizer wrapper and an MMEngine Runner with a
checkpoint every iteration. Two ranks: tests/test_distributed/
test_bad_input_stops_every_rank.py."""
import re

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset

from i2ckd_mm.models.algorithms.step_check import clean_labels
from tiny_models import make_seg_batch, tiny_distill, tiny_distill_cfg

BAD_LABEL = r'labels contain class ids {} that are neither in \[0, 4\) ' \
    r'nor the ignore index 255'


def _algorithm(**loss):
    torch.manual_seed(0)
    return tiny_distill(loss=loss or None).train()


def _sgd(alg):
    return OptimWrapper(torch.optim.SGD(alg.parameters(), lr=0.1,
                                        momentum=0.9, weight_decay=1e-2))


def _trainable(alg):
    return {n: p.detach().clone() for n, p in alg.named_parameters()
            if p.requires_grad}


def _assert_untouched(alg, before):
    """No optimizer step (weights as before) and no backward (no grad)."""
    for name, p in alg.named_parameters():
        if name in before:
            assert torch.equal(p.detach(), before[name]), name
            assert p.grad is None, name


def _nan_at_a_labelled_pixel(module, args, out):
    """Forward hook: NaN at pixel (0, 0) of image 0, all channels (a
    labelled pixel: make_seg_batch labels every pixel)."""
    out = out.clone()
    out[0, :, 0, 0] = float('nan')
    return out


def _with_bad_ids(raw, ids, image=1):
    for j, value in enumerate(ids):
        raw['data_samples'][image].gt_sem_seg.data[0, j, :5] = value
    return raw


# ------------------------------------------------------------ bad labels
@pytest.mark.parametrize('ids, named', [((200, ), '[200]'),
                                        ((-3, 7, 200), '[-3, 200]')])
def test_bad_label_ids_stop_the_step_and_no_loss_sees_them(ids, named):
    """The loss's message (smallest and largest bad id), raised before any
    backward; the student's cross-entropy saw the bad ids as ignore, so it
    cannot fail first (before, it raised its own IndexError)."""
    alg = _algorithm()
    head = alg.student.decode_head
    seen = []
    real = head.loss_by_feat

    def loss_by_feat(seg_logits, samples):
        seen.append(torch.stack([s.gt_sem_seg.data for s in samples]))
        return real(seg_logits, samples)

    head.loss_by_feat = loss_by_feat
    raw = _with_bad_ids(make_seg_batch(seed=1), ids)
    expected = torch.stack([s.gt_sem_seg.data
                            for s in raw['data_samples']]).clone()
    before = _trainable(alg)
    with pytest.raises(ValueError, match=BAD_LABEL.format(re.escape(named))):
        alg.train_step(raw, _sgd(alg))
    _assert_untouched(alg, before)
    (labels, ) = seen
    bad = ((expected < 0) | (expected >= 4)) & (expected != 255)
    assert bad.sum() == 5 * len(ids)
    assert (labels[bad] == 255).all()
    assert torch.equal(labels[~bad], expected[~bad])
    # the next, good, step trains
    alg.train_step(make_seg_batch(seed=2), _sgd(alg))
    assert not torch.equal(
        alg.student.decode_head.conv_seg.weight.detach(),
        before['architecture.decode_head.conv_seg.weight'])


def test_clean_labels():
    labels = torch.tensor([[0, 3, 255], [1, 2, 255]])
    cleaned, status = clean_labels(labels, 4, 255)
    assert torch.equal(cleaned, labels) and status.tolist() == [0, 0]
    labels = torch.tensor([[0, 4, 255], [-1, 254, 3], [-7, 1, 2]])
    cleaned, status = clean_labels(labels, 4, 255)
    assert torch.equal(cleaned, torch.tensor(
        [[0, 255, 255], [255, 255, 3], [255, 1, 2]]))
    # minus the smallest, the largest bad id (the loss's encoding)
    assert status.tolist() == [7, 254]
    assert labels[0, 1] == 4  # the input is left as it was
    # an ignore index inside [0, K), uint8 labels, only large bad ids
    labels = torch.tensor([0, 1, 9], dtype=torch.uint8)
    cleaned, status = clean_labels(labels, 4, 0)
    assert cleaned.tolist() == [0, 1, 0] and cleaned.dtype == torch.uint8
    assert status.tolist() == [0, 9]


def test_disagreeing_ignore_indices_fail_at_build():
    cfg = tiny_distill_cfg(loss=dict(ignore_index=254))
    with pytest.raises(ValueError, match=r'ignore indices disagree: '
                       r'loss_i2ckd\.ignore_index = 254, student '
                       r'decode_head\.ignore_index = 255'):
        tiny_distill(loss=dict(ignore_index=254))
    assert cfg  # (the config itself is fine: the models disagree)


# ------------------------------------------------------- NaN/Inf features
@pytest.mark.parametrize('side', ['preds_S (student feature)',
                                  'preds_T (teacher feature)'])
def test_nonfinite_feature_stops_the_step_before_backward(side):
    alg = _algorithm()
    module = (alg.distiller.connectors['sfeat'] if side.startswith('preds_S')
              else alg.teacher.decode_head.convs[0].conv)
    handle = module.register_forward_hook(_nan_at_a_labelled_pixel)
    before = _trainable(alg)
    with pytest.raises(FloatingPointError, match=re.escape(side) +
                       ' contains NaN or Inf at a labelled pixel'):
        alg.train_step(make_seg_batch(), _sgd(alg))
    _assert_untouched(alg, before)
    handle.remove()
    # nothing of the bad step is left over: the next step trains
    log = alg.train_step(make_seg_batch(seed=1), _sgd(alg))
    assert log['distill.loss_i2ckd'] > 0


def test_nonfinite_distill_loss_value_stops_the_step():
    alg = _algorithm()
    alg.distiller.distill_losses['loss_i2ckd'].register_forward_hook(
        lambda m, a, out: out * float('inf'))
    before = _trainable(alg)
    with pytest.raises(FloatingPointError, match=r"the distillation loss "
                       r"\['loss_i2ckd'\] is NaN or Inf"):
        alg.train_step(make_seg_batch(), _sgd(alg))
    _assert_untouched(alg, before)


def test_nonfinite_skip_option_trains_the_other_losses():
    """``nonfinite='skip'`` (outside AMP): the I2CKD term of the step is
    zero and logged as skipped; the task loss trains."""
    alg = _algorithm(nonfinite='skip')
    alg.distiller.connectors['sfeat'].register_forward_hook(
        _nan_at_a_labelled_pixel)
    before = _trainable(alg)
    log = alg.train_step(make_seg_batch(), _sgd(alg))
    assert log['distill.loss_i2ckd'] == 0 and log['distill.i2ckd_skipped'] == 1
    assert torch.isfinite(log['student.decode.loss_ce'])
    name = 'architecture.decode_head.conv_seg.weight'
    after = dict(alg.named_parameters())[name]
    assert torch.isfinite(after).all()
    assert not torch.equal(after.detach(), before[name])


# -------------------------------------------------------------------- AMP
def _cpu_amp(alg, monkeypatch):
    """MMEngine's AmpOptimWrapper on CPU: bf16 autocast (what its
    ``optim_context`` gives on CPU) and an enabled CPU ``GradScaler``
    (torch >= 2.3; the wrapper's default, the CUDA one, is disabled without
    CUDA and would step every gradient)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_mod
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    with pytest.warns(UserWarning):  # the CUDA GradScaler, disabled
        wrapper = AmpOptimWrapper(
            optimizer=torch.optim.SGD(alg.parameters(), lr=0.1),
            dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=256.0)
    assert wrapper.loss_scaler.is_enabled()
    return wrapper


def test_amp_skips_a_nonfinite_step_counts_it_and_goes_on(monkeypatch):
    """An Inf in the student's feature at a labelled pixel (as an fp16
    overflow would be) under AMP: the GradScaler skips the optimizer step
    (weights unchanged, scale halved), ``distill.amp_skipped`` logs it, the
    logged losses stay finite, and the next step trains. Only the
    distillation loss sees the Inf (a hook on the connector), so the skip is
    the step check's doing, not the task loss's."""
    alg = _algorithm()
    amp = _cpu_amp(alg, monkeypatch)
    log = alg.train_step(make_seg_batch(seed=0), amp)
    assert log['distill.amp_skipped'] == 0 and log['distill.loss_i2ckd'] > 0
    handle = alg.distiller.connectors['sfeat'].register_forward_hook(
        lambda m, a, out: out.index_put(
            (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]),
             torch.tensor([1])), torch.tensor(float('inf'), dtype=out.dtype)))
    before = {n: p.detach().clone() for n, p in alg.named_parameters()}
    log = alg.train_step(make_seg_batch(seed=1), amp)
    handle.remove()
    assert log['distill.amp_skipped'] == 1
    assert all(torch.isfinite(v) for v in log.values())
    assert amp.loss_scaler.get_scale() == 128.0
    for name, p in alg.named_parameters():
        assert torch.equal(p.detach(), before[name]), name
    log = alg.train_step(make_seg_batch(seed=2), amp)
    assert log['distill.amp_skipped'] == 0
    assert amp.loss_scaler.get_scale() == 128.0
    assert not torch.equal(alg.student.decode_head.conv_seg.weight.detach(),
                           before['architecture.decode_head.conv_seg.weight'])
    # bad label ids are no overflow: they stop the run under AMP too
    with pytest.raises(ValueError, match=BAD_LABEL.format(r'\[200\]')):
        alg.train_step(_with_bad_ids(make_seg_batch(seed=3), [200]), amp)


# ------------------------------------------------------ MMEngine's DDP path
def test_ddp_wrapper_stops_the_step(tmp_path):
    """MMDistributedDataParallel.train_step calls the algorithm's data
    preprocessor and loss(), never its train_step: the check still runs in
    the step (one gloo rank; two ranks: tests/test_distributed)."""
    from mmengine.model import MMDistributedDataParallel
    assert not dist.is_initialized()
    store = dist.FileStore(str(tmp_path / 'store'), 1)
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    try:
        alg = _algorithm()
        ddp = MMDistributedDataParallel(module=alg)
        optim = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1))
        before = _trainable(alg)
        with pytest.raises(ValueError, match=BAD_LABEL.format(r'\[200\]')):
            ddp.train_step(_with_bad_ids(make_seg_batch(), [200]), optim)
        _assert_untouched(alg, before)
        handle = alg.teacher.decode_head.convs[0].conv.register_forward_hook(
            _nan_at_a_labelled_pixel)
        with pytest.raises(FloatingPointError, match=r'preds_T \(teacher'):
            ddp.train_step(make_seg_batch(seed=1), optim)
        _assert_untouched(alg, before)
        handle.remove()
        ddp.train_step(make_seg_batch(seed=2), optim)
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------- an MMEngine Runner
class _Images(Dataset):
    """6 random 32x32 images, labels in [0, 4); ``bad`` (index -> 'label'
    or 'nan') makes one image's label hold id 200 or its pixels NaN."""

    def __init__(self, bad):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (6, 3, 32, 32), generator=g,
                                    dtype=torch.uint8)
        self.labels = torch.randint(0, 4, (6, 1, 32, 32), generator=g)
        self.bad = bad

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image, label = self.images[i].clone(), self.labels[i].clone()
        if self.bad.get(i) == 'label':
            label[:, :4] = 200
        elif self.bad.get(i) == 'nan':  # a float image passes the
            image = image.float()  # data preprocessor as it is
            image[:, 4:12, 4:12] = float('nan')
        return dict(inputs=image, data_samples=SegDataSample(
            gt_sem_seg=PixelData(data=label)))


class _Iterations(Hook):
    """Records the iterations whose after_train_iter hooks ran."""
    priority = 'LOWEST'

    def __init__(self):
        self.done = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.done.append(runner.iter + 1)


@pytest.mark.parametrize('bad, max_iters, error', [
    ('label', 3, ValueError),  # iteration 2 of 3
    ('nan', 2, FloatingPointError),  # the last iteration
])
def test_runner_stops_in_the_bad_iteration(tmp_path, bad, max_iters, error):
    """The batch of iteration 2 (images 2, 3) is bad: the run raises in
    iteration 2, whose after_train_iter hooks (checkpoint, EMA, logging,
    validation) never run: iter_1.pth is written, iter_2.pth is not."""
    record = _Iterations()
    runner = Runner(
        model=tiny_distill_cfg(_scope_='mmrazor'),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            batch_size=2, num_workers=0, dataset=_Images({3: bad}),
            sampler=dict(type='InfiniteSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           by_epoch=False, interval=1)),
        custom_hooks=[dict(type='EMAHook'), record],
        default_scope='mmseg')
    with pytest.raises(error):
        runner.train()
    assert record.done == [1]
    assert (tmp_path / 'iter_1.pth').exists()
    assert not (tmp_path / 'iter_2.pth').exists()

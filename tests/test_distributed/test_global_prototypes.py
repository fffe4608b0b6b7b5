"""I2CKD across 2 processes (gloo, CPU): ``prototype_scope='global'`` gives
each rank the loss of one process on the concatenated batch (``'batch'``
scope, which equals the loop reference, ``tools/toy/reference_i2ckd.py``), and
DDP's averaged student gradients equal that process's gradients, for every
option that takes part in the reduction (the pixel term's rank-local pixels
included); the default ``'image'`` scope communicates nothing; bad input on
one rank makes every rank raise instead of hanging in the all_reduce."""
import socket
import time
from datetime import timedelta
from types import SimpleNamespace

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from toy import reference_i2ckd as ref
from i2ckd_mm.models.losses.i2ckd_loss import I2CKDLoss

WORLD = 2
PER_RANK = 2
NUM_CLASSES = 4
# Every option that takes part in the reduction, each in at least one case:
# normalize, distance, negatives, symmetric, pull (both types), the label
# resize, and the pixel term with both pixel_prototypes (its pixels are
# rank-local, its prototypes global).
CASES = {
    'literal': dict(),
    'variant': dict(normalize=True, pull_weight=0.5, symmetric=True,
                    margin=0.3, negatives='hardest'),
    'mode_resize': dict(label_resize='mode', pull_weight=1.0),
    'cosine': dict(distance='cosine', symmetric=True, margin=0.5,
                   pull_weight=0.5, pull_type='linear'),
    'pixel_own': dict(normalize=True, margin=0.2, pull_weight=1.0,
                      pixel_weight=1.0),
    'pixel_teacher': dict(pixel_weight=0.7, pixel_prototypes='teacher',
                          pixel_tau=0.5, negatives='hardest'),
    'pixel_cosine': dict(distance='cosine', pixel_weight=1.5, margin=0.3,
                         symmetric=True, negatives='hardest'),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _data():
    """Inputs (4, 3, 8, 8), teacher features (4, 6, 8, 8), labels
    (4, 16, 16): class 3 only in images 2-3 (rank 1), class 2 only in
    image 0 (rank 0), ignore pixels everywhere, more on rank 1 (so the
    ranks' labelled pixel counts differ)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(WORLD * PER_RANK, 3, 8, 8, generator=g,
                    dtype=torch.float64)
    t = torch.randn(WORLD * PER_RANK, 6, 8, 8, generator=g,
                    dtype=torch.float64)
    y = torch.randint(0, 2, (WORLD * PER_RANK, 16, 16), generator=g)
    y[0, :6] = 2
    y[2:, 8:] = 3
    y[:, :, :2] = 255
    y[3, 12:] = 255
    return x, t, y


# (row, col) of the 8x8 feature of global image 2 (rank 1's first image)
# that gets a NaN; its label is labels[2, 2 * row, 2 * col] (nearest 16->8)
NAN_PIXEL = (3, 5)


def _student():
    torch.manual_seed(0)
    return nn.Conv2d(3, 6, 3, padding=1).double()


class _Algorithm(nn.Module):
    """The attributes DistillLossWeightScheduleHook touches, + a parameter
    so that DDP can wrap it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.distiller = nn.Module()
        self.distiller.distill_losses = nn.ModuleDict(
            dict(loss_i2ckd=I2CKDLoss(NUM_CLASSES, loss_weight=2.0)))
        self.distillation_stopped = False


def _worker(rank, port, out_dir):
    import i2ckd_mm  # noqa: F401,F811  (spawned: fresh interpreter)
    from mmengine.logging import MessageHub
    from mmengine.model import MMDistributedDataParallel

    from i2ckd_mm.engine.hooks import DistillLossWeightScheduleHook

    torch.set_num_threads(1)
    # a timeout turns a would-be hang (ranks disagreeing on a collective)
    # into an error
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        x, t, y = _data()
        sl = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        res = {}
        for name, kwargs in CASES.items():
            student = nn.parallel.DistributedDataParallel(_student())
            loss_fn = I2CKDLoss(NUM_CLASSES, prototype_scope='global',
                                **kwargs)
            loss = loss_fn(student(x[sl]), t[sl], y[sl])
            loss.backward()  # DDP averages the gradients over the ranks
            res[name] = dict(
                loss=loss.detach(),
                grads=[p.grad.clone() for p in student.parameters()],
                triplets=loss_fn.last_stats['triplets'])

        # 'image' scope: any collective would fail here
        real = dist.all_reduce

        def forbidden(*args, **kwargs):
            raise AssertionError('image scope called all_reduce')

        dist.all_reduce = forbidden
        try:
            with torch.no_grad():
                res['image'] = I2CKDLoss(NUM_CLASSES)(_student()(x[sl]),
                                                      t[sl], y[sl])
        finally:
            dist.all_reduce = real

        # nonfinite='skip' on ONE rank: all ranks skip together, no hang.
        # The NaN sits on a labelled pixel (NAN_PIXEL); one on an ignored
        # pixel would not count (tested in test_i2ckd_loss.py).
        s = _student()(x[sl]).detach()
        if rank == 1:
            s[(0, 0) + NAN_PIXEL] = float('nan')
        loss_fn = I2CKDLoss(NUM_CLASSES, prototype_scope='global',
                            nonfinite='skip')
        res['skip'] = (loss_fn(s, t[sl], y[sl]).item(),
                       float(loss_fn.last_stats.get('skipped', 0)))
        # ... and the next step (finite everywhere) is computed again
        res['after_skip'] = loss_fn(_student()(x[sl]).detach(), t[sl],
                                    y[sl]).item()

        # the weight hook reaches the algorithm through the DDP wrapper
        model = MMDistributedDataParallel(module=_Algorithm())
        hook = DistillLossWeightScheduleHook(
            losses=dict(loss_i2ckd=dict(warmup_iters=4, stop_iter=6)))
        runner = SimpleNamespace(
            model=model, iter=0,
            message_hub=MessageHub.get_instance(f'hook{rank}'))
        hook.before_train(runner)
        weights = []
        for it in (0, 2, 5, 6):
            runner.iter = it
            hook.before_train_iter(runner, batch_idx=it)
            weights.append(
                (model.module.distiller.distill_losses['loss_i2ckd']
                 .loss_weight, model.module.distillation_stopped))
        res['hook'] = weights

        # torch's SyncBatchNorm refuses CPU tensors once a process group
        # exists: multi-process CPU runs must swap SyncBN for BN.
        try:
            nn.SyncBatchNorm(6).train()(torch.randn(2, 6, 4, 4))
            res['syncbn_cpu'] = 'ran'
        except ValueError as e:
            res['syncbn_cpu'] = str(e)
        torch.save(res, f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD,
                       join=True, start_method='spawn')
    return [torch.load(out / f'rank{r}.pt', weights_only=False)
            for r in range(WORLD)]


@pytest.mark.parametrize('case', list(CASES))
def test_global_scope_equals_one_process_on_concatenated_batch(ranks, case):
    assert not dist.is_initialized()  # one process, no group
    x, t, y = _data()
    student = _student()
    loss_fn = I2CKDLoss(NUM_CLASSES, prototype_scope='batch', **CASES[case])
    loss = loss_fn(student(x), t, y)
    loss.backward()
    assert loss_fn.last_stats['triplets'] > 0 and loss.item() > 0
    with torch.no_grad():  # 'batch' on the global batch is the reference's
        expected = ref.loss(_student()(x), t, y, NUM_CLASSES,
                            **{'prototype_scope': 'batch', **CASES[case]})
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-10,
                               atol=1e-12)
    for r, res in enumerate(ranks):
        got = res[case]
        torch.testing.assert_close(got['loss'], loss.detach(), rtol=1e-12,
                                   atol=1e-12, msg=f'rank {r} loss')
        assert got['triplets'] == loss_fn.last_stats['triplets']
        for g_ddp, p in zip(got['grads'], student.parameters()):
            torch.testing.assert_close(g_ddp, p.grad, rtol=1e-12,
                                       atol=1e-12, msg=f'rank {r} gradient')


def test_global_scope_differs_from_per_rank_batches(ranks):
    """Control: the ranks' own batch prototypes give another loss, so the
    equality above really needs the all_reduce."""
    x, t, y = _data()
    for case, kwargs in CASES.items():
        with torch.no_grad():
            local = I2CKDLoss(NUM_CLASSES, prototype_scope='batch', **kwargs)(
                _student()(x[:PER_RANK]), t[:PER_RANK], y[:PER_RANK])
        assert abs(local.item() - ranks[0][case]['loss'].item()) > 1e-4, case


def test_image_scope_needs_no_communication(ranks):
    x, t, y = _data()
    with torch.no_grad():
        for r, res in enumerate(ranks):
            sl = slice(r * PER_RANK, (r + 1) * PER_RANK)
            local = I2CKDLoss(NUM_CLASSES)(_student()(x[sl]), t[sl], y[sl])
            torch.testing.assert_close(res['image'], local, rtol=0, atol=0)


def test_skip_is_agreed_by_all_ranks(ranks):
    _, _, y = _data()
    label = int(y[2, 2 * NAN_PIXEL[0], 2 * NAN_PIXEL[1]])
    assert label != 255  # the NaN is on a labelled pixel
    assert [res['skip'] for res in ranks] == [(0.0, 1.0)] * WORLD
    assert all(res['after_skip'] > 0 for res in ranks)
    assert ranks[0]['after_skip'] == ranks[1]['after_skip']


def test_weight_hook_through_ddp_wrapper(ranks):
    # base 2.0, warm-up 4 iterations from 0, stop at 6
    expected = [(0.0, False), (1.0, False), (2.0, False), (0.0, True)]
    assert all(res['hook'] == expected for res in ranks)


def test_syncbn_needs_bn_on_cpu_process_groups(ranks):
    assert all('SyncBatchNorm expected input tensor to be on GPU' in
               res['syncbn_cpu'] for res in ranks)


# ------------------------------------------- bad input on one rank only
def _bad_input_worker(rank, port, out_dir):
    import i2ckd_mm  # noqa: F401,F811  (spawned: fresh interpreter)
    torch.set_num_threads(1)
    # The group timeout is a backstop: without the fix the good rank waits
    # in the all_reduce until it expires, and the test's deadline fails.
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=WORLD, timeout=timedelta(seconds=30))
    try:
        x, t, y = _data()
        sl = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        res = {}
        for case in ('label', 'host'):  # the group stays usable in between
            y_rank = y[sl].clone()
            if rank == 1 and case == 'label':
                y_rank[0, 0, 0] = 7  # not a class of 4, not the ignore index
            elif rank == 1:
                y_rank = y_rank.float()  # a host-side error: float labels
            loss_fn = I2CKDLoss(NUM_CLASSES, prototype_scope='global')
            start = time.monotonic()
            try:
                loss_fn(_student()(x[sl]), t[sl], y_rank).backward()
                res[case] = ('no error', time.monotonic() - start)
            except Exception as e:  # noqa: B902  (recorded for the test)
                res[case] = (f'{type(e).__name__}: {e}',
                             time.monotonic() - start)
        torch.save(res, f'{out_dir}/bad{rank}.pt')
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def bad_input_ranks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('bad')
    ctx = mp.start_processes(_bad_input_worker,
                             args=(_free_port(), str(tmp_path)),
                             nprocs=WORLD, join=False, start_method='spawn')
    deadline = time.monotonic() + 90  # spawn + imports; a hang takes 30+
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail('a rank was still running: the ranks hung')
    return [torch.load(tmp_path / f'bad{r}.pt') for r in range(WORLD)]


@pytest.mark.parametrize('case', ['label', 'host'])
def test_bad_input_on_one_rank_makes_every_rank_raise(bad_input_ranks, case):
    """A bad label id that only rank 1 sees: the ids travel in the first
    all_reduce, so both ranks raise the loss's message at the call; a
    host-side error on rank 1 (float labels): both ranks raise naming
    rank 1 and its error, none waits in a collective."""
    for rank, res in enumerate(bad_input_ranks):
        message, seconds = res[case]
        if case == 'label':
            assert message.startswith(
                'ValueError: labels contain class ids [7] that are neither '
                'in [0, 4)'), (rank, message)
        else:
            assert message.startswith('ValueError: I2CKDLoss('), (rank,
                                                                  message)
            assert 'bad input on rank(s) [1]' in message
            assert f'this is rank {rank}' in message
            assert ('rank 1: TypeError: I2CKDLoss: gt must be an integer '
                    'tensor') in message
        assert seconds < 10, (rank, seconds)  # together, not at the timeout

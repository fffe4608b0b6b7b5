"""``I2CKDDistill(compile_losses=...)``: the distillation losses compiled
with ``torch.compile`` give the eager values and gradients, compile once
(no recompilation across steps), and report bad input as the eager ones do.

Inductor compiles take tens of seconds on a small CPU: one compiled
algorithm (module fixture) serves every test of the file."""
import copy

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
import torch._dynamo
from mmengine.structures import PixelData

from i2ckd_mm.models.losses import I2CKDLoss
from tiny_models import make_seg_batch, tiny_distill

# every option that changes the compiled code path: the pixel term, the
# pull, normalised prototypes, symmetric triplets
LOSS = dict(pixel_weight=0.5, pull_weight=1.0, normalize=True,
            symmetric=True, margin=0.2)


def _pair(**compile_kwargs):
    """(eager, compiled) algorithms with the same weights."""
    torch.manual_seed(0)
    eager = tiny_distill(loss=LOSS)
    compiled = tiny_distill(loss=LOSS, **compile_kwargs)
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


@pytest.fixture(scope='module')
def pair():
    """Compiled with torch's defaults (inductor), compiled once here."""
    torch._dynamo.reset()
    eager, compiled = _pair(compile_losses=True)
    step(compiled, make_seg_batch(seed=0))  # the one compilation
    yield eager, compiled
    # dynamo caches per code object (I2CKDLoss.compute), guarded on the
    # loss instance: leave no entries for later tests' instances
    torch._dynamo.reset()


def step(alg, raw):
    """One forward + backward; the losses and the parameters' gradients."""
    alg.train()
    alg.zero_grad()
    losses = alg(**alg.data_preprocessor(copy.deepcopy(raw), True),
                 mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, {n: p.grad.clone() for n, p in alg.named_parameters()
                    if p.grad is not None}


def test_switch_compiles_the_loss_computation_only():
    eager, compiled = _pair(compile_losses=dict(backend='eager'))
    loss = compiled.distiller.distill_losses['loss_i2ckd']
    assert isinstance(loss, I2CKDLoss)
    # compute is compiled; forward, which reads the status, stays eager
    assert 'compute' in vars(loss) and 'forward' not in vars(loss)
    assert 'compute' not in vars(eager.distiller.distill_losses['loss_i2ckd'])
    # a deep copy (EMA) computes with its own loss module, not the original
    copied = copy.deepcopy(loss)
    assert copied.compute.__self__ is copied
    with pytest.raises(TypeError, match='compile_losses must be True, False '
                       'or a dict'):
        tiny_distill(compile_losses='inductor')


def test_compiled_values_and_gradients_equal_eager(pair):
    eager, compiled = pair
    for seed in (1, 2):
        raw = make_seg_batch(seed=seed, ignore_rows=3)
        want, want_grads = step(eager, raw)
        got, got_grads = step(compiled, raw)
        assert got.keys() == want.keys()
        assert want['distill.loss_i2ckd'] > 0
        for key, value in want.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4,
                                       atol=1e-6, msg=key)
        assert got_grads.keys() == want_grads.keys()
        for name, grad in want_grads.items():
            # inductor sums float32 in another order: an error relative to
            # the tensor's scale, not to each (possibly tiny) entry
            scale = float(grad.abs().max())
            torch.testing.assert_close(got_grads[name], grad, rtol=0,
                                       atol=1e-5 * scale + 1e-8, msg=name)


def test_no_recompilation_across_steps(pair):
    _, compiled = pair
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in range(3, 6):  # other data, same shapes: the same code
            step(compiled, make_seg_batch(seed=seed))


def test_bad_input_is_reported_as_by_the_eager_loss(pair):
    """The step stops with the same error, compiled or not: a label id that
    is neither a class nor ignore (host check), a NaN teacher feature (the
    compiled loss's status)."""
    eager, compiled = pair
    bad = make_seg_batch(seed=7)
    bad['data_samples'][1].gt_sem_seg.data[0, :8] = 200
    raised = []
    for alg in (eager, compiled):
        with pytest.raises(ValueError, match=r'class ids \[200\]') as err:
            step(alg, bad)
        raised.append(str(err.value))
    assert raised[0] == raised[1]
    raised = []
    for alg in (eager, compiled):
        # NaN teacher weights in the recorded block, put back afterwards (a
        # copy of the compiled algorithm would compile again)
        weight = alg.teacher.decode_head.convs[0].conv.weight
        kept = weight.detach().clone()
        with torch.no_grad():
            weight.fill_(float('nan'))
        try:
            with pytest.raises(FloatingPointError,
                               match=r'preds_T \(teacher feature\)') as err:
                step(alg, make_seg_batch(seed=8))
        finally:
            with torch.no_grad():
                weight.copy_(kept)
        raised.append(str(err.value))
    assert raised[0] == raised[1]


def test_losses_past_the_recompile_limit_run_eagerly_with_a_warning(caplog):
    """``compute`` compiles once per distinct set of options (instances
    alike share a compilation); past dynamo's recompile limit (8) a loss
    with new options runs eagerly, with the eager value, and dynamo says
    so in a warning (docs/usage.md)."""
    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    s = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    t = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 4))
    with caplog.at_level('WARNING', logger='torch._dynamo'):
        for i in range(limit + 1):
            crit = I2CKDLoss(num_classes=3 + i)
            compiled = torch.compile(crit.compute, backend='eager')
            loss, status = compiled(s, t, labels)
            torch.testing.assert_close(loss, crit.compute(s, t, labels)[0])
            assert tuple(status.tolist()) == I2CKDLoss.STATUS_CLEAR
            warned = 'recompile_limit' in caplog.text
            assert warned == (i == limit), i
    torch._dynamo.reset()

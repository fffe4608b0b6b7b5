"""I2CKDDistill(teacher_precision=..., teacher_channels_last=...).

The teacher's forward runs under an autocast of its own ('bf16', 'fp16'),
its records reach the losses as float32, the student's forward is not under
that autocast (alone, under an AMP optimizer wrapper, under DDP), the
default 'fp32' is the step it always was, bit for bit, and bad options
raise errors that name them. Tiny models (tests/tiny_models.py), CPU.
"""
import contextlib

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmrazor.registry import MODELS

from i2ckd_mm.models.algorithms import i2ckd_distill as distill_mod
from tiny_models import make_seg_batch, tiny_distill, tiny_distill_cfg

#: the module both models record (tiny_distill_cfg's default source)
SOURCE = 'decode_head.convs'
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(seed=0, **options):
    """A tiny algorithm whose weights depend on ``seed`` only (not on the
    options), in train mode."""
    torch.manual_seed(seed)
    with pytest.warns(UserWarning, match='no teacher_ckpt given'):
        alg = tiny_distill(**options)
    return alg.train()


def batch(alg, seed=0):
    return alg.data_preprocessor(make_seg_batch(seed=seed), True)


@contextlib.contextmanager
def spy(alg):
    """Collects what one step computes: the outputs of the recorded module
    of teacher and student (and whether an autocast was on for them), the
    teacher's input, and the keyword arguments the I2CKD loss is called
    with."""
    seen = {}

    def output_of(side):
        def hook(module, args, out):
            seen[side] = out
            seen[f'{side}_autocast'] = (torch.is_autocast_enabled('cpu'),
                                        torch.get_autocast_dtype('cpu'))
        return hook

    def loss_args(module, args, kwargs):
        seen['loss_kwargs'] = dict(kwargs)

    def teacher_input(module, args):
        seen['teacher_input'] = args[0]  # what the network itself got

    handles = [
        alg.teacher.get_submodule(SOURCE).register_forward_hook(
            output_of('teacher')),
        alg.student.get_submodule(SOURCE).register_forward_hook(
            output_of('student')),
        alg.teacher.backbone.register_forward_pre_hook(teacher_input),
        alg.distiller.distill_losses['loss_i2ckd'].register_forward_pre_hook(
            loss_args, with_kwargs=True),
    ]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def teacher_feature_by_hand(alg, inputs, dtype):
    """The recorded teacher feature computed outside the algorithm: the
    teacher in eval mode, no_grad, under ``torch.autocast('cpu', dtype)``
    (None: no autocast)."""
    out = {}
    handle = alg.teacher.get_submodule(SOURCE).register_forward_hook(
        lambda m, a, o: out.setdefault('feat', o))
    try:
        autocast = (torch.autocast('cpu', dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            alg.teacher(inputs, None, mode='tensor')
    finally:
        handle.remove()
    return out['feat']


def grads(alg):
    return {n: p.grad.clone() for n, p in alg.named_parameters()
            if p.grad is not None}


def step(alg, data):
    losses = alg(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    return losses


# ------------------------------------------------------------- the teacher
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_teacher_feature_is_the_autocast_feature_in_float32(precision):
    alg = build(teacher_precision=precision)
    data = batch(alg)
    expected = teacher_feature_by_hand(alg, data['inputs'], DTYPES[precision])
    assert expected.dtype == DTYPES[precision]
    with spy(alg) as seen:
        step(alg, data)
    # the teacher ran under its autocast; its module output was 16-bit
    assert seen['teacher_autocast'] == (True, DTYPES[precision])
    assert seen['teacher'].dtype == DTYPES[precision]
    preds_t = seen['loss_kwargs']['preds_T']
    assert preds_t.dtype == torch.float32
    assert preds_t.is_contiguous()
    assert not preds_t.requires_grad
    # the loss sees exactly the 16-bit feature, widened (exact in fp32)
    assert torch.equal(preds_t, expected.float())
    assert torch.equal(preds_t, seen['teacher'].float())
    # and it is not the float32 teacher's feature: the option did something
    fp32 = teacher_feature_by_hand(alg, data['inputs'], None)
    assert not torch.equal(preds_t, fp32)
    torch.testing.assert_close(preds_t, fp32, rtol=0.05, atol=0.05)


def test_default_fp32_is_the_step_as_before():
    """'fp32' (the default) runs the teacher as the algorithm did before the
    option existed (no autocast, no copy of its records): the same losses
    and gradients, bit for bit, as that code path, and the loss gets the
    teacher module's own output tensor."""
    alg = build()
    assert alg.teacher_precision == 'fp32'
    assert alg.teacher_channels_last is False
    before = build()

    def teacher_forward_before(batch_inputs, data_samples, forward):
        # the teacher's run before these options, verbatim (inside the
        # recorders and no_grad of MMRazor's loss())
        forward(batch_inputs, data_samples, mode='tensor')

    before.teacher_forward = teacher_forward_before
    data = batch(alg)
    with spy(alg) as seen:
        losses = step(alg, data)
    losses_before = step(before, data)
    assert seen['teacher_autocast'][0] is False
    assert seen['loss_kwargs']['preds_T'] is seen['teacher']  # no copy
    assert seen['teacher'].dtype == torch.float32
    assert losses.keys() == losses_before.keys()
    for key in losses:
        assert torch.equal(losses[key], losses_before[key]), key
    g, g_before = grads(alg), grads(before)
    assert g.keys() == g_before.keys() and g
    for name in g:
        assert torch.equal(g[name], g_before[name]), name


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_teacher_stays_frozen_in_eval_without_grad(precision):
    alg = build(teacher_precision=precision, teacher_channels_last=True)
    state = {k: v.clone() for k, v in alg.teacher.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(alg.parameters(), lr=0.1))
    alg.train_step(make_seg_batch(), optim)
    assert not alg.teacher.training
    assert all(not m.training for m in alg.teacher.modules())
    for name, p in alg.teacher.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    for k, v in alg.teacher.state_dict().items():
        # BN running statistics included; weights compared in value
        assert torch.equal(v, state[k]), k
        assert v.dtype == state[k].dtype, k


# ------------------------------------------------------------- the student
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_student_forward_is_not_under_the_teachers_autocast(precision):
    """The student's forward, task loss and gradients are those of the
    default run, bit for bit: only the teacher's feature changed."""
    alg, default = build(teacher_precision=precision), build()
    data = batch(alg)
    with spy(alg) as seen:
        losses = step(alg, data)
    with spy(default) as seen_default:
        losses_default = step(default, data)
    assert seen['student_autocast'][0] is False
    assert seen['student'].dtype == torch.float32
    assert seen['loss_kwargs']['preds_S'].dtype == torch.float32
    assert torch.equal(seen['student'], seen_default['student'])
    key = 'student.decode.loss_ce'
    assert torch.equal(losses[key], losses_default[key])
    # the distill loss differs (its teacher input did), the task loss not
    assert not torch.equal(losses['distill.loss_i2ckd'],
                           losses_default['distill.loss_i2ckd'])
    # the task loss's gradients in the student are the default run's too
    # (the distill gradient differs with its teacher input, so a second
    # forward backpropagates the task loss alone)
    for model in (alg, default):
        model.zero_grad()
        model(**data, mode='loss')[key].backward()
    for (n, p), (_, q) in zip(alg.student.named_parameters(),
                              default.student.named_parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), n


def _amp_wrapper(monkeypatch, alg):
    """MMEngine's AmpOptimWrapper (bf16) on CPU: its constructor only
    refuses a machine without an accelerator; its optim_context is the
    ``mmengine.runner.amp.autocast`` the AMP runs use, which on CPU takes
    bf16."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_mod
    from mmengine.optim import AmpOptimWrapper
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    with pytest.warns(UserWarning):  # GradScaler: CUDA not available
        return AmpOptimWrapper(
            optimizer=torch.optim.SGD(alg.parameters(), lr=0.0),
            dtype='bfloat16')


def test_amp_student_keeps_the_wrappers_autocast(monkeypatch):
    """Under an AMP wrapper (bf16) with an fp16 teacher: the teacher's own
    autocast wins inside its forward, and the student's forward is back in
    the wrapper's bf16 autocast, equal to the student of a default-teacher
    AMP step; the teacher feature reaches the loss as float32."""
    alg, default = build(teacher_precision='fp16'), build()
    raw = make_seg_batch()
    seen_both = []
    for model in (alg, default):
        optim = _amp_wrapper(monkeypatch, model)
        with spy(model) as seen:
            model.train_step(raw, optim)
        seen_both.append(seen)
    seen, seen_default = seen_both
    assert seen['teacher_autocast'] == (True, torch.float16)
    assert seen['teacher'].dtype == torch.float16
    assert seen['loss_kwargs']['preds_T'].dtype == torch.float32
    # the default teacher runs in the wrapper's autocast, as it always did
    assert seen_default['teacher_autocast'] == (True, torch.bfloat16)
    assert seen_default['loss_kwargs']['preds_T'].dtype == torch.bfloat16
    for s in (seen, seen_default):
        assert s['student_autocast'] == (True, torch.bfloat16)
        assert s['student'].dtype == torch.bfloat16
    assert torch.equal(seen['student'], seen_default['student'])
    # the fp16 teacher feature is the one computed by hand in fp16
    data = alg.data_preprocessor(raw, True)
    expected = teacher_feature_by_hand(alg, data['inputs'], torch.float16)
    assert torch.equal(seen['loss_kwargs']['preds_T'], expected.float())


def test_ddp_step_with_bf16_teacher(tmp_path):
    """MMDistributedDataParallel (gloo, one process): train_step goes
    through the wrapper into the algorithm; the teacher runs in bf16, the
    student in float32, and the step's losses equal the unwrapped
    algorithm's."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    assert not dist.is_initialized()
    store = dist.FileStore(str(tmp_path / 'store'), 1)
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    try:
        alg = build(teacher_precision='bf16', teacher_channels_last=True)
        plain = build(teacher_precision='bf16', teacher_channels_last=True)
        ddp = MMDistributedDataParallel(module=alg)
        raw = make_seg_batch()
        with spy(alg) as seen:
            log = ddp.train_step(
                raw, OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0)))
        log_plain = plain.train_step(
            raw, OptimWrapper(torch.optim.SGD(plain.parameters(), lr=0)))
    finally:
        dist.destroy_process_group()
    assert seen['teacher_autocast'] == (True, torch.bfloat16)
    assert seen['student_autocast'][0] is False
    assert seen['loss_kwargs']['preds_T'].dtype == torch.float32
    assert seen['student'].dtype == torch.float32
    for key in ('student.decode.loss_ce', 'distill.loss_i2ckd'):
        assert torch.equal(log[key], log_plain[key]), key


# ---------------------------------------------------------- channels_last
def test_channels_last_teacher():
    alg = build(teacher_channels_last=True)
    default = build()
    convs = [m for m in alg.teacher.modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert convs
    for m in convs:
        assert m.weight.is_contiguous(memory_format=torch.channels_last)
    # the student is not touched
    for m in alg.student.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1:
            assert not m.weight.is_contiguous(
                memory_format=torch.channels_last)
    data = batch(alg)
    with spy(alg) as seen:
        step(alg, data)
    assert seen['teacher_input'].is_contiguous(
        memory_format=torch.channels_last)
    assert seen['teacher'].is_contiguous(memory_format=torch.channels_last)
    preds_t = seen['loss_kwargs']['preds_T']
    # contiguous again, float32 as with the default, the same values up to
    # the convolution's summation order
    assert preds_t.is_contiguous() and preds_t.dtype == torch.float32
    expected = teacher_feature_by_hand(default, data['inputs'], None)
    torch.testing.assert_close(preds_t, expected, rtol=1e-5, atol=1e-5)
    # a later .to() keeps the format
    alg.to('cpu', torch.float32)
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------ bad options
@pytest.mark.parametrize('value', ['half', 'float16', 'FP16', None, 16])
def test_bad_teacher_precision_raises_naming_the_option(value):
    with pytest.raises(ValueError, match=r"teacher_precision must be one of "
                       r"\['bf16', 'fp16', 'fp32'\], got " +
                       repr(value).replace('(', r'\(')):
        MODELS.build(tiny_distill_cfg(teacher_precision=value))


@pytest.mark.parametrize('value', ['yes', 1, None])
def test_bad_teacher_channels_last_raises_naming_the_option(value):
    with pytest.raises(ValueError, match='teacher_channels_last must be '
                       f'True or False, got {value!r}'):
        MODELS.build(tiny_distill_cfg(teacher_channels_last=value))


def test_autocast_that_a_device_refuses_raises(monkeypatch):
    """torch.autocast only warns and runs without autocast when a device
    type does not take a dtype (CPU and float64 here): the algorithm stops
    instead of running a float32 teacher under a 16-bit name."""
    alg = build(teacher_precision='fp16')
    monkeypatch.setitem(distill_mod.TEACHER_PRECISIONS, 'fp16',
                        torch.float64)
    data = batch(alg)
    with pytest.warns(UserWarning, match='not supported'), \
            pytest.raises(RuntimeError, match=r"teacher_precision='fp16' "
                          r"needs torch.autocast with torch.float64 on "
                          r"'cpu'"):
        alg(**data, mode='loss')


def warns_once(precision, match):
    """A step of a new algorithm warns (``match``; None: says nothing), and
    its second step says nothing."""
    import warnings
    alg = build(teacher_precision=precision)
    data = batch(alg)
    if match is not None:
        with pytest.warns(UserWarning, match=match):
            alg(**data, mode='loss')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        alg(**data, mode='loss')


def test_fp16_on_cpu_warns_once_that_it_is_slow(monkeypatch):
    monkeypatch.setattr(distill_mod, 'cpu_has_fast_bf16', lambda: True)
    warns_once('fp16', r"teacher_precision='fp16' on a CPU .* 'bf16' is the "
               r'fast 16-bit choice')
    warns_once('bf16', None)  # a CPU with native bf16


def test_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch):
    """Without AVX512-BF16 or AMX the bf16 teacher runs emulated kernels
    (37x the fp32 time measured on an AVX2 CPU): said once; where torch
    cannot tell (None), nothing is said."""
    monkeypatch.setattr(distill_mod, 'cpu_has_fast_bf16', lambda: False)
    warns_once('bf16', r"teacher_precision='bf16' on a CPU without "
               r"AVX512-BF16 or AMX .* use 'fp32'")
    monkeypatch.setattr(distill_mod, 'cpu_has_fast_bf16', lambda: None)
    warns_once('bf16', None)


def test_cpu_bf16_probe_reads_torch_cpu(monkeypatch):
    """True when either probe says so, False when both say no, None when
    torch lacks one."""
    for avx, amx, want in ((True, False, True), (False, True, True),
                           (False, False, False)):
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported',
                            lambda v=avx: v, raising=False)
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported',
                            lambda v=amx: v, raising=False)
        assert distill_mod.cpu_has_fast_bf16() is want
    monkeypatch.delattr(torch.cpu, '_is_amx_tile_supported')
    assert distill_mod.cpu_has_fast_bf16() is None

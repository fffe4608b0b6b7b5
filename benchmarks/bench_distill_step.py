"""What distillation costs: a student-alone step vs an I2CKD step, by part.

Prints a markdown report with, for each setting, the median time of

* a **student-alone** training step (the student config's own model and
  optimizer), split into data preprocessing, forward (incl. the task
  losses), backward and optimizer update;
* a **distillation** training step (``I2CKDDistill``), split into data
  preprocessing, (a) teacher forward (``no_grad``, ``mode='tensor'``, as the
  algorithm runs it), (b) student forward + backward incl. its task losses,
  (c) distillation losses, forward + backward, incl. the connector, and the
  optimizer update (student + connector parameters).

Settings: the ToyShapes configs (``tools/toy``, ``toy_configs``: ``student``,
``i2ckd``, ``i2ckd_cwd``, and CWD alone = ``i2ckd_cwd`` without its I2CKD
loss) at 64x64, batch 8, and one DeepLabV3-R101 -> DeepLabV3-R18 step of
the shipped Cityscapes config at 512x1024, batch 2 (the recipe's images per
GPU; batch 1 cannot train: BN of the ASPP image-pool branch sees one value
per channel). Each distillation config is run as it is (fp32 teacher, the
current loss), with the I2CKD loss of git revision ``--baseline``
("loss before", :func:`bench_i2ckd_loss.load_baseline`; 512x1024: with
``--big-before``) and with each ``--step-teachers`` setting of
``I2CKDDistill(teacher_precision=..., teacher_channels_last=...)``
(default: a bf16 teacher), all interleaved in one run.

Two more tables: the **operators and host waits** of one step per variant,
by part (:func:`op_census`: top-level ATen operators and the operators that
make a host wait for a GPU, from ``torch.profiler``), and the **teacher's
forward alone** (:func:`bench_teacher`) at growing sizes, per
``--teachers`` setting (fp32, bf16, with and without channels_last): median
time, peak tensor memory, the recorded features' difference from fp32.

Weights are random (``teacher_ckpt=None``, ``pretrained=None``): the cost of
a step does not depend on the values of the weights. SyncBN stays in the
configs: with no process group it runs as plain BN (as in
``tests/test_models/test_algorithms/test_i2ckd_distill.py``). Inputs are
random images and blocky random labels (square blocks of one class, 5 %
of pixels ignored).

How the parts are measured (instrumented, not estimated):

* forward parts: the time of ``alg.teacher_forward`` (the teacher with its
  recorders, autocast and record cast: all a step spends on it), the wall
  time between a forward pre-hook and a forward hook on ``alg.student`` (the student's forward in
  ``mode='loss'`` computes its task losses), and around
  ``alg.distiller.compute_distill_losses`` (connectors + distill losses);
  all inside one ordinary ``alg(**batch, mode='loss')`` call;
* backward: the usual ``total.backward()`` is done in two exactly
  equivalent phases. Once the student's forward is done, every recorded
  student tensor (the distill losses' student inputs) is replaced in its
  recorder by an alias (``view_as``, no copy) that only the distill losses
  read. Phase 1, ``torch.autograd.grad(distill_total, [aliases] +
  [distiller parameters])``, runs the backward of the distill losses and
  the connectors only: autograd stops at the aliases and does not enter the
  student (without aliases it would, when one recorded tensor is computed
  from another: logits from the bottleneck in the CWD configs). Phase 2,
  ``torch.autograd.backward([student_total, *aliases], [1, *their distill
  gradients])``, runs the student's backward once, with the task-loss and
  the distill gradients summed where they meet; its work is the
  student-alone backward's (autograd's cost does not depend on the
  gradient's values). By linearity the two phases give the same gradients
  as ``total.backward()``; ``split check`` verifies it on the toy settings
  (512x1024: with ``--big-extras``): max |g_split - g_plain| / max
  |g_plain| over all parameters, dropout masks seeded alike. Zeroing a
  loss weight would not isolate the distill backward (the graph stays);
  timing student-only vs total backward in separate steps would subtract
  two noisy numbers; hence this split;
* the optimizer update is ``optim_wrapper.step()`` + ``zero_grad()``;
* ``parts/total`` is the median over runs of (sum of the timed parts) /
  (time of the whole instrumented step): what the parts miss (loss
  parsing, label stacking, recorder bookkeeping, hook overhead) is
  1 - parts/total. ``plain train_step`` is the median of the
  uninstrumented ``model.train_step`` (one ordinary backward), run right
  after each instrumented step: it shows whether instrumenting and
  splitting the backward change the cost (toy settings; 512x1024 with
  ``--big-extras``).

Every variant of a setting is run ``runs`` times after ``warmup`` steps, the
variants interleaved run by run (the start rotating) so that load from
other processes on a shared machine hits them alike; medians are reported.
A 512x1024 batch-2 I2CKD step takes about 2 min of one core: that setting
runs 3 times per variant without warm-up (the median drops a slow first
run) and without the extras, to keep the whole benchmark near 10 minutes
of one core.
Torch intra-op threads: ``--threads`` (default 1). Clock (``--clock``): on
CPU the process's CPU time by default (with one thread it excludes the time
other jobs hold the core, which made wall times of one 512x1024 step vary
2.5x here; see :class:`Clock`), the wall time range is reported too; CUDA:
``--device cuda``, wall time with ``torch.cuda.synchronize`` before every
clock reading.

Usage::

    python benchmarks/bench_distill_step.py --quick          # ~20 s smoke run
    python benchmarks/bench_distill_step.py --big-before --out benchmarks/results_step_cost.md
    python benchmarks/bench_distill_step.py --no-big --step-teachers bf16 bf16+cl
    python benchmarks/bench_distill_step.py --device cuda --out results_step_cost_cuda.md
"""
import argparse
import contextlib
import glob
import inspect
import os.path as osp
import statistics
import sys
import time
import warnings
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import torch

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path.append(osp.join(ROOT, 'tools'))  # toy
from toy import toy_configs  # noqa: E402
sys.path.insert(0, HERE)  # machine.py, bench_i2ckd_loss.py
# HOST_WAIT_OPS, is_top_level: the one operator / host-wait counter the
# benchmarks and tests share
from machine import (HOST_WAIT_OPS, finish_report, is_top_level,  # noqa: E402
                     machine_lines)
# the loss of an earlier revision ("before" rows) and the profiler's peak
# tensor memory: one implementation, the loss benchmark's
from bench_i2ckd_loss import load_baseline, peak_memory  # noqa: E402
from i2ckd_mm.models.losses import I2CKDLoss  # noqa: E402
CITYSCAPES_CONFIG_NAME = ('i2ckd_bottleneck_deeplabv3_r101-d8_'
                          'deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py')
#: I2CKD + CWD on the logits: without its I2CKD loss, CWD alone (--big-cwd)
CITYSCAPES_CWD_CONFIG_NAME = (
    'i2ckd-cwd_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '8xb2-40k_cityscapes-512x1024.py')
IGNORE = 255

#: Part names of a step, in report order.
PARTS = ('pre', 'teacher', 'student_fwd', 'student_bwd', 'distill_fwd',
         'distill_bwd', 'optim')
#: The loss revision of the "before" rows (issue 15: the loss before its
#: sync-free rewrite).
BASELINE_REV = '6829419'


def cityscapes_config(name: str = CITYSCAPES_CONFIG_NAME) -> str:
    """A shipped R101 -> R18 Cityscapes config (found if it moved)."""
    path = osp.join(ROOT, 'configs', 'i2ckd', name)
    if osp.isfile(path):
        return path
    found = sorted(
        glob.glob(osp.join(ROOT, 'configs', '**', name), recursive=True))
    if not found:
        raise FileNotFoundError(f'{name} not under '
                                f'{osp.join(ROOT, "configs")}')
    return found[0]


def compile_settings(modes: List[str]) -> Tuple[List[tuple], List[str]]:
    """(label, I2CKDDistill options) of each ``--compile-losses`` mode, and
    report lines: where I2CKDDistill takes no ``compile_losses`` argument
    the compiled rows are skipped and the report says so."""
    from i2ckd_mm.models.algorithms.i2ckd_distill import I2CKDDistill
    if not modes:
        return [], []
    if 'compile_losses' not in inspect.signature(
            I2CKDDistill.__init__).parameters:
        return [], ['- compiled rows: skipped (this I2CKDDistill has no '
                    '`compile_losses` argument)']
    out = []
    for mode in modes:
        if mode == 'default':
            out.append(('compiled', dict(compile_losses=True)))
        elif mode.startswith('backend='):
            out.append((f'compiled ({mode})', dict(compile_losses=dict(
                backend=mode[len('backend='):]))))
        else:
            out.append((f'compiled ({mode})',
                        dict(compile_losses=dict(mode=mode))))
    return out, []


def compile_mode(text: str) -> str:
    """A --compile-losses value: default, reduce-overhead, backend=NAME."""
    if text in ('default', 'reduce-overhead') or (
            text.startswith('backend=') and len(text) > len('backend=')):
        return text
    raise argparse.ArgumentTypeError(
        f'{text!r}: default, reduce-overhead or backend=NAME')


# ---------------------------------------------------------------- building
def build_models(cfg_path: str, size: Optional[Tuple[int, int]],
                 device: torch.device, student_only: bool = False,
                 options: Optional[dict] = None, cwd_only: bool = False):
    """Model, optimizer wrapper and class count of a config, random weights.

    A distillation config gives the I2CKDDistill algorithm (with
    ``student_only``: its student as a plain segmentor); a plain MMSeg
    config gives the segmentor. ``size`` (h, w) sets the data
    preprocessor's crop/pad size; no pretrained weights are loaded. The
    optimizer is the config's ``optim_wrapper``. ``options`` are further
    keys of the algorithm (``teacher_precision``, ...); ``cwd_only`` drops
    the I2CKD losses (and their connectors) of an I2CKD + CWD config.
    """
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmrazor.registry import MODELS as RAZOR_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model
    distill = model_cfg.get('type') == 'I2CKDDistill'
    student_cfg = model_cfg.architecture if distill else model_cfg
    student_cfg.pretrained = None  # no ImageNet download
    if size is not None:
        student_cfg.data_preprocessor.size = tuple(size)
    with warnings.catch_warnings():
        # 'no teacher_ckpt given': random teacher weights are the point here
        warnings.simplefilter('ignore')
        if distill and student_only:
            model = SEG_MODELS.build(student_cfg)
            distill = False
        elif distill:
            model_cfg.update(options or {})
            if cwd_only:
                drop_i2ckd_losses(model_cfg.distiller)
            model_cfg.teacher_ckpt = None
            if 'cfg_path' not in model_cfg.teacher:
                model_cfg.teacher.pretrained = None
            model = RAZOR_MODELS.build(model_cfg)
        else:
            model = SEG_MODELS.build(model_cfg)
    model.to(device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    student = model.student if distill else model
    return model, optim, student.decode_head.num_classes


def drop_i2ckd_losses(distiller) -> None:
    """Remove the I2CKD losses, their mappings and connectors from a
    distiller config (what is left: the other losses, e.g. CWD)."""
    names = [n for n, c in distiller.distill_losses.items()
             if c.get('type') == 'I2CKDLoss']
    if len(names) == len(distiller.distill_losses):
        raise ValueError('cwd_only: the config has no other loss than '
                         f'I2CKD ({names})')
    for name in names:
        distiller.distill_losses.pop(name)
        for record in distiller.loss_forward_mappings.pop(name).values():
            if record.get('connector'):
                distiller.connectors.pop(record['connector'])


def use_baseline_loss(alg, baseline_cls, cfg_path: str) -> int:
    """Replace every I2CKDLoss of ``alg`` by ``baseline_cls`` (the loss of
    an earlier revision, :func:`bench_i2ckd_loss.load_baseline`) built with
    the config's options and the class count the algorithm gave it;
    returns how many were replaced."""
    from mmengine.config import Config
    cfgs = Config.fromfile(cfg_path).model.distiller.distill_losses
    replaced = 0
    for name, loss in list(alg.distiller.distill_losses.items()):
        if not isinstance(loss, I2CKDLoss):
            continue
        kwargs = {k: v for k, v in cfgs[name].items() if k != 'type'}
        kwargs['num_classes'] = loss.num_classes
        alg.distiller.distill_losses[name] = baseline_cls(**kwargs).to(
            next(alg.parameters()).device)
        replaced += 1
    if not replaced:
        raise ValueError(f'no I2CKDLoss in {cfg_path} to replace')
    return replaced


def make_batch(h: int, w: int, n: int, num_classes: int, block: int,
               seed: int = 0) -> dict:
    """Raw batch: uint8 images and labels of random ``block``-pixel squares
    (one class each; 5 % of the pixels ignored)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        blocks = torch.randint(
            0, num_classes, (1, 1, -(-h // block), -(-w // block)),
            generator=g).float()
        labels = torch.nn.functional.interpolate(
            blocks, scale_factor=block, mode='nearest')[0, :, :h, :w].long()
        labels[torch.rand(labels.shape, generator=g) < 0.05] = IGNORE
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(
            dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# ---------------------------------------------------------------- timing
class Clock:
    """Seconds that first wait for the device's queued work.

    ``kind='cpu'``: this process's CPU time (``time.process_time``). With
    one intra-op thread on a CPU device all the step's work runs in this
    process, and its CPU time does not count the time other jobs hold the
    core (a shared 2-core machine slices it by up to several x); memory
    bandwidth and cache sharing still show. ``kind='wall'``:
    ``time.perf_counter``, the only choice on CUDA (the GPU's work is not
    CPU time).
    """

    def __init__(self, device: torch.device, kind: str = 'wall') -> None:
        if device.type == 'cuda' and kind != 'wall':
            raise ValueError('CUDA steps need the wall clock')
        self.device = device
        self.kind = kind
        self._now = time.process_time if kind == 'cpu' else time.perf_counter

    def __call__(self) -> float:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return self._now()


@contextlib.contextmanager
def forward_timers(alg, clock: Clock, parts: Dict[str, float]):
    """Add the teacher's, the student's and the distill losses' forward wall
    time of ``alg``'s calls made inside the block to ``parts``.

    The teacher's part is the whole of ``alg.teacher_forward``: recorders
    on, its autocast (``teacher_precision``), the channels_last copy of the
    input and the cast of its records to float32, i.e. all the teacher
    costs a step. The parts are also marked for the profiler
    (``record_function('part::<name>')``, see :func:`op_census`).
    """
    handles, starts, marks = [], {}, {}

    def pre(module, args):
        marks['student_fwd'] = torch.profiler.record_function(
            'part::student_fwd').__enter__()
        starts['student_fwd'] = clock()

    def post(module, args, out):
        parts['student_fwd'] += clock() - starts.pop('student_fwd')
        marks.pop('student_fwd').__exit__(None, None, None)

    handles.append(alg.student.register_forward_pre_hook(pre))
    handles.append(alg.student.register_forward_hook(post))
    distiller = alg.distiller
    original = distiller.compute_distill_losses
    teacher_forward = alg.teacher_forward

    def timed_teacher(*args, **kwargs):
        with torch.profiler.record_function('part::teacher'):
            t0 = clock()
            teacher_forward(*args, **kwargs)
            parts['teacher'] += clock() - t0

    def timed(*args, **kwargs):
        # The student forward is done: let the distill losses read aliases
        # of the recorded student tensors (see alias_student_records).
        alias_student_records(alg)
        with torch.profiler.record_function('part::distill_fwd'):
            t0 = clock()
            out = original(*args, **kwargs)
            parts['distill_fwd'] += clock() - t0
        return out

    # instance attributes win over the class methods
    distiller.compute_distill_losses = timed
    alg.teacher_forward = timed_teacher
    try:
        yield
    finally:
        del distiller.compute_distill_losses  # back to the class methods
        del alg.teacher_forward
        for h in handles:
            h.remove()


def alias_student_records(alg) -> None:
    """Replace every recorded student tensor by an alias (``view_as``: no
    copy) that only the distill losses consume.

    Without it, the backward split of a config that records two student
    tensors, one computed from the other (the CWD configs record the
    bottleneck output and the logits computed from it), would run the
    classifier's backward in the distill phase (autograd must go through it
    to complete the bottleneck's gradient) and then again in the student
    phase, whose graph it freed. The alias's own backward node is reached
    only in the student phase.
    """

    def alias(x):
        if isinstance(x, torch.Tensor):
            return x.view_as(x) if x.requires_grad else x
        if isinstance(x, (list, tuple)):
            return type(x)(alias(y) for y in x)
        if isinstance(x, dict):
            return {k: alias(v) for k, v in x.items()}
        return x

    for recorder in alg.distiller.student_recorders.recorders.values():
        buffer = recorder.data_buffer  # the recorder's own list
        buffer[:] = [alias(x) for x in buffer]


def recorded_student_tensors(alg) -> List[torch.Tensor]:
    """The student tensors the recorders kept in this forward (the distill
    losses' inputs from the student), those that carry a gradient."""
    out = []

    def collect(x):
        if isinstance(x, torch.Tensor):
            if x.requires_grad and all(x is not y for y in out):
                out.append(x)
        elif isinstance(x, (list, tuple)):
            for y in x:
                collect(y)
        elif isinstance(x, dict):
            for y in x.values():
                collect(y)

    for recorder in alg.distiller.student_recorders.recorders.values():
        collect(recorder.data_buffer)
    return out


def split_backward(alg, losses: Dict[str, torch.Tensor], clock: Clock,
                   parts: Dict[str, float]) -> None:
    """``total.backward()`` in two equivalent phases (module docstring):
    the distill losses' backward down to the (aliased) recorded student
    tensors, then the student's backward with both gradients."""
    student_total, _ = alg.parse_losses(
        {k: v for k, v in losses.items() if k.startswith('student.')})
    distill_total, _ = alg.parse_losses(
        {k: v for k, v in losses.items() if k.startswith('distill.')})
    if len(losses) != len([k for k in losses
                           if k.startswith(('student.', 'distill.'))]):
        raise KeyError(f'unexpected loss keys: {sorted(losses)}')
    recorded = recorded_student_tensors(alg)
    params = [p for p in alg.distiller.parameters() if p.requires_grad]
    with torch.profiler.record_function('part::distill_bwd'):
        t0 = clock()
        grads = torch.autograd.grad(distill_total, recorded + params,
                                    allow_unused=True)
        for p, g in zip(params, grads[len(recorded):]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        t1 = clock()
    used = [(t, g) for t, g in zip(recorded, grads) if g is not None]
    with torch.profiler.record_function('part::student_bwd'):
        torch.autograd.backward(
            [student_total] + [t for t, _ in used],
            [torch.ones_like(student_total)] + [g for _, g in used])
        t2 = clock()
    parts['distill_bwd'] += t1 - t0
    parts['student_bwd'] += t2 - t1


def instrumented_step(model, optim, data: dict, clock: Clock,
                      update: bool = True) -> Dict[str, float]:
    """One training step, timed by part; returns seconds per part and
    ``total`` (the whole step). ``update=False`` leaves the gradients in
    place and skips the optimizer."""
    parts = defaultdict(float)
    distill = hasattr(model, 'distiller')
    t_start, wall_start = clock(), time.perf_counter()
    batch = model.data_preprocessor(data, True)
    t = clock()
    parts['pre'] += t - t_start
    if distill:
        with forward_timers(model, clock, parts):
            losses = model(**batch, mode='loss')
        split_backward(model, losses, clock, parts)
    else:
        with torch.profiler.record_function('part::student_fwd'):
            losses = model(**batch, mode='loss')
            total, _ = model.parse_losses(losses)
            t1 = clock()
            parts['student_fwd'] += t1 - t
        with torch.profiler.record_function('part::student_bwd'):
            total.backward()
            parts['student_bwd'] += clock() - t1
    if update:
        with torch.profiler.record_function('part::optim'):
            t = clock()
            optim.step()
            optim.zero_grad()
            parts['optim'] += clock() - t
    parts['total'] = clock() - t_start
    parts['wall'] = time.perf_counter() - wall_start
    return dict(parts)


def op_census(model, optim, data: dict, clock: Clock) -> Dict[str, int]:
    """Operators and host waits of one (instrumented) step, by part.

    One step runs under ``torch.profiler`` (CPU activity). ``ops_<part>``
    counts the *top-level* ATen operators issued in a part
    (``machine.is_top_level``: what the Python code or autograd calls, an
    op's internal calls, e.g. ``aten::conv2d`` -> ``aten::convolution``,
    not counted again; MMRazor's ChannelWiseDivergence forward+backward is
    27 so), ``waits_<part>`` the ``machine.HOST_WAIT_OPS`` at any depth:
    ``machine.op_counts``'s numbers, split by part. The
    parts are the ``part::<name>`` ranges that :func:`instrumented_step`
    marks; the step updates the weights like any other.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        instrumented_step(model, optim, data, clock)
    return count_by_part(prof.events())


def count_by_part(events) -> Dict[str, int]:
    """``ops_<part>`` / ``waits_<part>`` of profiler events (see
    :func:`op_census`); events outside any ``part::`` range count as part
    ``other``."""
    counts = defaultdict(int)
    for e in events:
        if not e.name.startswith('aten::'):
            continue
        part, p = 'other', e.cpu_parent
        while p is not None:
            if p.name.startswith('part::'):
                part = p.name[len('part::'):]
                break
            p = p.cpu_parent
        if is_top_level(e):
            counts[f'ops_{part}'] += 1
        if e.name in HOST_WAIT_OPS:
            counts[f'waits_{part}'] += 1
    return dict(counts)


def split_check(alg, optim, data: dict, clock: Clock) -> float:
    """max |g_split - g_plain| / max |g_plain| over the parameters'
    gradients of one step, the dropout masks seeded alike."""
    optim.zero_grad()
    torch.manual_seed(0)
    total, _ = alg.parse_losses(
        alg(**alg.data_preprocessor(data, True), mode='loss'))
    total.backward()
    plain = {n: p.grad.clone() for n, p in alg.named_parameters()
             if p.grad is not None}
    optim.zero_grad()
    torch.manual_seed(0)
    instrumented_step(alg, optim, data, clock, update=False)
    split = {n: p.grad.clone() for n, p in alg.named_parameters()
             if p.grad is not None}
    optim.zero_grad()
    if plain.keys() != split.keys():
        raise AssertionError('split backward reached other parameters: '
                             f'{sorted(plain.keys() ^ split.keys())}')
    scale = max(float(g.abs().max()) for g in plain.values())
    return max(float((split[n] - g).abs().max())
               for n, g in plain.items()) / scale


def bench_setting(variants: Dict[str, tuple], data: dict, runs: int,
                  warmup: int, plain: bool, clock: Clock,
                  log: Callable[[str], None]) -> Dict[str, dict]:
    """Median parts of each variant (name -> (model, optim)), interleaved."""
    for _ in range(warmup):
        for model, optim in variants.values():
            instrumented_step(model, optim, data, clock)
    names = list(variants)
    samples = {name: [] for name in names}
    plains = {name: [] for name in names}
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            model, optim = variants[name]
            samples[name].append(instrumented_step(model, optim, data, clock))
            if plain:
                t0 = clock()
                model.train_step(data, optim)
                plains[name].append(clock() - t0)
        log(f'  run {r + 1}/{runs}: ' + ', '.join(
            f'{n} {samples[n][-1]["total"]:.3f} s' for n in names))
    result = {}
    for name in names:
        s = samples[name]
        med = {p: statistics.median(x.get(p, 0.0) for x in s)
               for p in PARTS + ('total', )}
        med['coverage'] = statistics.median(
            sum(x.get(p, 0.0) for p in PARTS) / x['total'] for x in s)
        med['plain'] = statistics.median(plains[name]) if plain else None
        med['runs'] = runs
        med['totals'] = [x['total'] for x in s]
        med['walls'] = [x['wall'] for x in s]
        result[name] = med
    return result


# ------------------------------------------------------ teacher settings
def teacher_setting(text: str) -> dict:
    """``'bf16'`` -> ``dict(teacher_precision='bf16')``; a ``+cl`` suffix
    adds ``teacher_channels_last=True`` (``'bf16+cl'``)."""
    precision, _, suffix = text.partition('+')
    if suffix not in ('', 'cl'):
        raise argparse.ArgumentTypeError(
            f'{text!r}: a teacher setting is fp32, bf16 or fp16, optionally '
            'with +cl (channels_last)')
    from i2ckd_mm.models.algorithms.i2ckd_distill import TEACHER_PRECISIONS
    if precision not in TEACHER_PRECISIONS:
        raise argparse.ArgumentTypeError(
            f'{text!r}: teacher precision must be one of '
            f'{sorted(TEACHER_PRECISIONS)}')
    options = dict(teacher_precision=precision)
    if suffix:
        options['teacher_channels_last'] = True
    return options


def teacher_label(options: dict) -> str:
    """'bf16 teacher', 'fp32 channels_last teacher', ..."""
    return (options['teacher_precision'] +
            (' channels_last' if options.get('teacher_channels_last') else '')
            + ' teacher')


def recorded_teacher_tensors(alg) -> List[torch.Tensor]:
    """The floating-point tensors the teacher recorders hold (top level)."""
    return [x for r in alg.distiller.teacher_recorders.recorders.values()
            for x in r.data_buffer
            if isinstance(x, torch.Tensor) and x.is_floating_point()]


def bench_teacher(cfg_path: str, size: Tuple[int, int], batch: int,
                  teachers: List[str], runs: int, device: torch.device,
                  clock: Clock, slow_runs: int = 1) -> List[dict]:
    """The teacher's forward alone (``alg.teacher_forward``: no_grad,
    recorders on, as a step runs it), per teacher setting, same weights.

    Returns one row per setting: median time, peak tensor memory of one
    call (:func:`bench_i2ckd_loss.peak_memory`: CPU profiler allocation
    events / CUDA max_memory_allocated, above what was allocated before),
    and the largest difference of the recorded teacher tensors from the
    first setting's, relative to their largest magnitude. An fp16 teacher
    on a CPU (slow kernels) is timed ``slow_runs`` times.
    """
    h, w = size
    models = {}
    for text in teachers:
        torch.manual_seed(0)  # the same teacher weights for every setting
        alg, _, k = build_models(cfg_path, size, device,
                                 options=teacher_setting(text))
        models[text] = alg.eval()
    first = models[teachers[0]]
    data = first.data_preprocessor(make_batch(h, w, batch, k, 32), True)
    inputs, samples = data['inputs'], data['data_samples']

    def forward(alg):
        def run():
            with torch.no_grad():
                alg.teacher_forward(inputs, samples)
        return run

    slow = {t for t in teachers if device.type == 'cpu'
            and teacher_setting(t)['teacher_precision'] == 'fp16'}
    times = {t: [] for t in teachers}
    for t in teachers:  # warm-up (and the records compared below)
        forward(models[t])()
    records = {t: recorded_teacher_tensors(models[t]) for t in teachers}
    for r in range(runs):
        order = teachers[r % len(teachers):] + teachers[:r % len(teachers)]
        for t in order:
            if t in slow and r >= slow_runs:
                continue
            t0 = clock()
            forward(models[t])()
            times[t].append(clock() - t0)
    rows = []
    ref = records[teachers[0]]
    scale = max(float(x.abs().max()) for x in ref)
    for t in teachers:
        diff = max(float((x.float() - y.float()).abs().max())
                   for x, y in zip(records[t], ref)) / scale
        rows.append(dict(
            teacher=t, label=teacher_label(teacher_setting(t)), h=h, w=w,
            batch=batch, runs=len(times[t]),
            ms=statistics.median(times[t]) * 1e3,
            peak=peak_memory(forward(models[t]), device),
            diff=diff, dtypes=sorted({str(x.dtype).replace('torch.', '')
                                      for x in records[t]})))
    return rows


TEACHER_HEAD = [
    '| teacher model, input | teacher | runs | forward ms (median) | vs '
    'first | peak tensor memory MiB | vs first | max feature Δ vs first '
    '(rel.) | records as |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|',
]


def teacher_rows(name: str, rows: List[dict]) -> List[str]:
    base = rows[0]
    return ['| ' + ' | '.join([
        f'{name}, {r["h"]}x{r["w"]}, batch {r["batch"]}', r['label'],
        str(r['runs']), f'{r["ms"]:.1f}', f'{r["ms"] / base["ms"]:.2f}x',
        f'{r["peak"] / 2**20:.1f}', f'{r["peak"] / base["peak"]:.2f}x',
        f'{r["diff"]:.1e}', ', '.join(r['dtypes'])]) + ' |' for r in rows]


CENSUS_HEAD = [
    '| setting | variant | ops: teacher fwd | ops: student fwd + bwd | '
    'ops: distill losses fwd + bwd | host waits: distill losses | host '
    'waits: rest of the step (optimizer) |',
    '|---|---|---:|---:|---:|---:|---:|',
]


def census_rows(setting: str, census: Dict[str, Dict[str, int]]
                ) -> List[str]:
    rows = []
    for name, c in census.items():
        distill = 'ops_distill_fwd' in c
        waits = sum(v for k, v in c.items() if k.startswith('waits_'))
        dwaits = c.get('waits_distill_fwd', 0) + c.get('waits_distill_bwd', 0)
        cells = [
            setting, name, str(c['ops_teacher']) if distill else '-',
            f'{c.get("ops_student_fwd", 0)} + {c.get("ops_student_bwd", 0)}',
            (f'{c.get("ops_distill_fwd", 0)} + '
             f'{c.get("ops_distill_bwd", 0)}') if distill else '-',
            str(dwaits) if distill else '-',
            f'{waits - dwaits} ({c.get("waits_optim", 0)})',
        ]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows


# ------------------------------------------------------------------ report


def _ms(x: float) -> str:
    return f'{x * 1e3:.1f}'


def table_rows(setting: str, res: Dict[str, dict], check: Dict[str, float],
               baseline: str) -> List[str]:
    """One markdown row per variant of a setting."""
    rows = []
    base = res[baseline]['total']
    for name, m in res.items():
        distill = name != baseline
        student = m['student_fwd'] + m['student_bwd']
        dist = m['distill_fwd'] + m['distill_bwd']
        cells = [
            setting, name, str(m['runs']), _ms(m['total']),
            _ms(m['plain']) if m['plain'] is not None else '-',
            f'{m["total"] / base:.2f}x',
            f'{_ms(m["teacher"])} ({m["teacher"] / m["total"]:.0%})'
            if distill else '-',
            f'{_ms(student)} ({student / m["total"]:.0%}): '
            f'{_ms(m["student_fwd"])} + {_ms(m["student_bwd"])}',
            f'{_ms(dist)} ({dist / m["total"]:.0%}): '
            f'{_ms(m["distill_fwd"])} + {_ms(m["distill_bwd"])}'
            if distill else '-',
            _ms(m['optim']), _ms(m['pre']), f'{m["coverage"]:.3f}',
            f'{check[name]:.1e}' if name in check else '-',
        ]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows


TABLE_HEAD = [
    '| setting | variant | runs | step ms (median) | plain train_step ms '
    '| vs student alone | (a) teacher fwd ms (share) | (b) student fwd+bwd '
    'ms (share): fwd + bwd | (c) distill losses ms (share): fwd + bwd '
    '| optimizer ms | data preproc. ms | parts/total | split check |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
]


def _size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: a size is HxW, e.g. '
                                         '128x256') from None
    return h, w


def main(argv: Optional[List[str]] = None) -> str:
    """Run the benchmark, print the markdown report and return it."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='toy I2CKD config only, 3 runs (smoke run, ~20 s)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--out', help='also write the markdown report here')
    p.add_argument('--threads', type=int, default=1,
                   help='torch.set_num_threads (default 1)')
    p.add_argument('--runs', type=int, help='timed toy steps per variant '
                   '(default 15, quick 3)')
    p.add_argument('--warmup', type=int, help='toy warm-up steps per '
                   'variant (default 3, quick 1)')
    p.add_argument('--big-runs', type=int, default=3,
                   help='timed 512x1024 steps per variant (default 3)')
    # batch 1 cannot train: the ASPP image-pool branch's BN then sees one
    # value per channel (1 x C x 1 x 1) and raises
    p.add_argument('--big-batch', type=int, default=2,
                   help='batch of the 512x1024 step (default 2, the '
                   'recipe\'s images per GPU; >= 2)')
    p.add_argument('--no-big', action='store_true',
                   help='skip the 512x1024 R101 -> R18 step')
    # One 512x1024 batch-2 I2CKD step is ~2 min of one core here: by default
    # the big setting has no warm-up (the median of 3 runs drops a slow
    # first run), no split check and no plain train_step (both shown at toy
    # size, same code), to keep the whole benchmark near 10 min of a core.
    p.add_argument('--big-warmup', type=int, default=0,
                   help='512x1024 warm-up steps per variant (default 0)')
    p.add_argument('--big-extras', action='store_true',
                   help='512x1024 too: split check and plain train_step')
    p.add_argument('--big-size', type=_size, default=(512, 1024),
                   help='input size of the Cityscapes step (default '
                   '512x1024; smaller only for a dry run)')
    p.add_argument('--big-cwd', action='store_true',
                   help='Cityscapes step too: CWD alone (the I2CKD + CWD '
                   'config without its I2CKD loss), with the plain and the '
                   '--step-teachers teachers')
    p.add_argument('--compile-losses', nargs='+', metavar='MODE',
                   type=compile_mode,
                   help='extra I2CKD rows with I2CKDDistill(compile_losses='
                   'True | dict(mode=MODE)), with the plain and the '
                   '--step-teachers teachers (skipped, and said so, where '
                   'I2CKDDistill has no compile_losses); MODE: default, '
                   'reduce-overhead or backend=NAME (a dry run: aot_eager)')
    p.add_argument('--no-toy', action='store_true',
                   help='skip the ToyShapes setting')
    p.add_argument('--no-teacher-table', action='store_true',
                   help='skip the teacher-forward table')
    p.add_argument('--clock', choices=('cpu', 'wall'),
                   help='what is timed: process CPU time (default on CPU) '
                   'or wall time (default, and the only choice, on CUDA)')
    p.add_argument('--baseline', default=BASELINE_REV,
                   help='git revision of the I2CKD loss of the "loss '
                   f'before" rows (default {BASELINE_REV}); none: no such '
                   'rows')
    p.add_argument('--step-teachers', nargs='*', default=['bf16'],
                   help='teacher settings of extra step rows with the '
                   'current loss (fp32|bf16|fp16, +cl for channels_last; '
                   'default bf16); the plain rows are the default fp32')
    p.add_argument('--big-before', action='store_true',
                   help='512x1024 too: the "loss before" row (+1 I2CKD '
                   'step per run)')
    p.add_argument('--teachers', nargs='+', type=str,
                   default=['fp32', 'bf16', 'fp32+cl', 'bf16+cl'],
                   help='teacher settings of the teacher-forward table, the '
                   'first the reference (default fp32 bf16 fp32+cl bf16+cl)')
    p.add_argument('--teacher-sizes', nargs='+', type=_size,
                   help='HxW of the teacher-forward table (default 64x128 '
                   '128x256 256x512 with the Cityscapes R101 teacher; '
                   'quick: 64x64 128x128 with the toy teacher)')
    p.add_argument('--teacher-batch', type=int, default=2)
    p.add_argument('--teacher-runs', type=int,
                   help='timed teacher forwards per setting (default 5, '
                   'quick 3)')
    p.add_argument('--note', action='append', default=[],
                   help='a line added to the report\'s header (repeatable)')
    args = p.parse_args(argv)
    for text in args.step_teachers + args.teachers:
        try:
            teacher_setting(text)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock_kind = args.clock or ('cpu' if device.type == 'cpu' else 'wall')
    clock = Clock(device, clock_kind)
    runs = args.runs or (3 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick
                                                         else 3)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    toy = toy_configs('toyshapes')
    baseline = (None if args.baseline == 'none' else
                load_baseline(args.baseline))
    step_teachers = [teacher_setting(t) for t in args.step_teachers]
    compiled, notes = compile_settings(args.compile_losses or [])

    def distill_variants(name, cfg, cwd_only=False, before=True):
        """The rows of one distillation config: the loss before (if a
        baseline is given and the config has I2CKD), the current loss, and
        the current loss with each --step-teachers setting."""
        out = {}
        spec = dict(cfg=cfg, cwd_only=cwd_only)
        if before and baseline is not None and not cwd_only:
            out[f'{name}, loss before ({args.baseline})'] = dict(
                spec, before=True)
        out[name] = spec
        for options in step_teachers:
            out[f'{name}, {teacher_label(options)}'] = dict(
                spec, options=options)
        if not cwd_only:  # compiled I2CKD losses
            for label, options in compiled:
                out[f'{name}, {label}'] = dict(spec, options=options)
                for teacher in step_teachers:
                    out[f'{name}, {label}, {teacher_label(teacher)}'] = \
                        dict(spec, options=dict(teacher, **options))
        return out

    variants = {'student alone': dict(cfg=toy['student'])}
    if not args.quick:
        variants.update(distill_variants('CWD', toy['i2ckd_cwd'],
                                         cwd_only=True))
    variants.update(distill_variants('I2CKD', toy['i2ckd']))
    if not args.quick:
        variants.update(distill_variants('I2CKD + CWD', toy['i2ckd_cwd']))
    settings = [] if args.no_toy else [
        # block: side of the square regions of one label class
        dict(name='ToyShapes 64x64, batch 8', variants=variants,
             size=(64, 64), batch=8, block=8, runs=runs, warmup=warmup,
             extras=True),
    ]
    if not (args.quick or args.no_big):
        big = cityscapes_config()
        big_variants = {'student alone': dict(cfg=big, student_only=True)}
        big_variants.update(distill_variants('I2CKD', big,
                                             before=args.big_before))
        if args.big_cwd:
            big_variants.update(distill_variants(
                'CWD', cityscapes_config(CITYSCAPES_CWD_CONFIG_NAME),
                cwd_only=True))
        bh, bw = args.big_size
        settings.append(
            dict(name=f'Cityscapes R101 -> R18, {bh}x{bw}, batch '
                 f'{args.big_batch}',
                 variants=big_variants,
                 size=(bh, bw), batch=args.big_batch, block=32,
                 runs=args.big_runs, warmup=args.big_warmup,
                 extras=args.big_extras))
    if args.quick:
        teacher_cfg, teacher_name = toy['i2ckd'], 'ToyShapes R18 1/2 width'
        teacher_sizes = args.teacher_sizes or [(64, 64), (128, 128)]
    else:
        teacher_cfg = cityscapes_config()
        teacher_name = 'Cityscapes DeepLabV3 R101'
        teacher_sizes = args.teacher_sizes or [(64, 128), (128, 256),
                                               (256, 512)]
    teacher_runs = args.teacher_runs or (3 if args.quick else 5)

    t_start = time.time()
    lines = ['# What distillation costs: one training step, by part', '']
    lines += machine_lines(f' (set with --threads {args.threads})')
    lines += [f'- {n}' for n in args.note]
    lines += [
        '- command: `python benchmarks/bench_distill_step.py '
        f'{" ".join(argv if argv is not None else sys.argv[1:])}`',
        f'- device: {args.device}; times are {clock_kind} time ('
        + ('process CPU time, time.process_time: with one thread it does '
           'not count the time other jobs hold the core' if clock_kind ==
           'cpu' else 'time.perf_counter') + '), in ms; medians of the runs '
        'given per row, the '
        'variants of a setting interleaved run by run; warm-up steps per '
        f'variant: toy {warmup}, 512x1024 {args.big_warmup}; random weights, '
        'random images, blocky random labels; the configs\' own optimizers '
        '(toy: AdamW, Cityscapes: SGD momentum 0.9)',
        '- parts: a timer around `alg.teacher_forward`, forward hooks on '
        'the student and a timer around `distiller.compute_distill_losses`;'
        ' the backward split '
        'exactly in two phases with `torch.autograd.grad` (distill losses + '
        'connector down to the recorded student feature, then the student '
        'with both gradients); `split check` = max gradient difference of '
        'that split vs one plain `backward()`, relative to the largest '
        'gradient; `parts/total` = timed parts / whole instrumented step '
        '(median over runs); `plain train_step` = uninstrumented '
        '`model.train_step`, interleaved (method: the docstring of '
        '`benchmarks/bench_distill_step.py`)',
        f'- variants: `loss before ({args.baseline})` = the I2CKD loss of '
        'that git revision (`bench_i2ckd_loss.load_baseline`) in place of '
        'the current one, same config options; `<p> teacher` = '
        '`I2CKDDistill(teacher_precision=<p>)` with the current loss (the '
        'other rows: the default, fp32); `CWD` = the I2CKD + CWD config '
        'without its I2CKD loss and connector; `compiled` = '
        '`I2CKDDistill(compile_losses=True)` (torch.compile of the '
        'distillation losses, inductor), `compiled (reduce-overhead)` = '
        '`compile_losses=dict(mode=\'reduce-overhead\')` (CUDA graphs); '
        'their compilation falls in the warm-up steps',
        *notes,
        '',
    ]
    lines += TABLE_HEAD
    results, censuses = {}, {}
    for st in settings:
        name, (h, w) = st['name'], st['size']
        log(f'[{args.device}] {name}: building ...')
        variants, classes = {}, set()
        for vname, spec in st['variants'].items():
            model, optim, k = build_models(
                spec['cfg'], (h, w), device, spec.get('student_only', False),
                spec.get('options'), spec.get('cwd_only', False))
            if spec.get('before'):
                use_baseline_loss(model, baseline, spec['cfg'])
            variants[vname] = (model, optim)
            classes.add(k)
        if len(classes) != 1:
            raise ValueError(f'{name}: class counts differ: {classes}')
        data = make_batch(h, w, st['batch'], classes.pop(), st['block'])
        check = {
            vname: split_check(model, optim, data, clock)
            for vname, (model, optim) in variants.items()
            if st['extras'] and hasattr(model, 'distiller')
        }
        log(f'[{args.device}] {name}: split check {check}; {st["runs"]} '
            'runs')
        res = bench_setting(variants, data, st['runs'], st['warmup'],
                            st['extras'], clock, log)
        results[name] = res
        lines += table_rows(name, res, check, 'student alone')
        if args.out:  # the table survives a run cut short after it
            with open(args.out, 'w') as f:
                f.write('\n'.join(lines + [
                    '', '(the run was still going: operator census, '
                    'teacher table and summary not written yet)', '']))
        if st['extras']:  # one more step per variant, under the profiler
            censuses[name] = {
                vname: op_census(model, optim, data, clock)
                for vname, (model, optim) in variants.items()}
        del variants
    lines += ['']
    if censuses:
        lines += [
            '## Operators and host waits of one step', '',
            'One more step per variant under `torch.profiler` (CPU): `ops` '
            '= top-level ATen operators issued in a part (an op\'s own '
            'internal calls not counted again; MMRazor\'s CWD '
            'forward+backward alone is 27 so), forward + backward; the '
            'distill losses\' part includes the connector. `host waits` = '
            'operators that make the host wait for a GPU ('
            + ', '.join(f'`{o[6:]}`' for o in HOST_WAIT_OPS) + ', at any '
            'depth): in the distill losses, and in the rest of the step '
            '(the student\'s task loss, data preprocessing, and in brackets '
            'the optimizer\'s: AdamW reads its step count once per '
            'parameter). Counts do not depend on the device\'s speed.', '']
        lines += CENSUS_HEAD
        for name, census in censuses.items():
            lines += census_rows(name, census)
        lines += ['']
    lines += [
        '## The teacher\'s forward alone', '',
        '`alg.teacher_forward` (no_grad, recorders on, autocast and the '
        'float32 cast of its records included) of one algorithm per teacher '
        'setting, the same weights; median '
        f'of {teacher_runs} runs after one warm-up, the settings '
        'interleaved; peak tensor memory of one call above what was '
        'allocated before (CPU: profiler allocation events, incl. the '
        'records it leaves; allocator caching not counted); feature Δ = '
        'max |record - first setting\'s record| / max |first\'s record|.'
        + (' fp16 on a CPU: 1 run (its convolutions take ~75x the fp32 '
           'time).' if any(teacher_setting(t)['teacher_precision'] == 'fp16'
                            for t in args.teachers) else ''), '']
    lines += TEACHER_HEAD
    teacher_results = []
    for (h, w) in ([] if args.no_teacher_table else teacher_sizes):
        log(f'[{args.device}] teacher forward {teacher_name} {h}x{w}: '
            f'{args.teachers}')
        rows = bench_teacher(teacher_cfg, (h, w), args.teacher_batch,
                             args.teachers, teacher_runs, device, clock)
        teacher_results.append(rows)
        lines += teacher_rows(teacher_name, rows)
    lines += ['', '## Summary', '']
    for name, res in results.items():
        base = res['student alone']
        for vname, m in res.items():
            span = (f'instrumented step {_ms(min(m["totals"]))}-'
                    f'{_ms(max(m["totals"]))} ms {clock_kind} time over the '
                    f'runs (wall {_ms(min(m["walls"]))}-'
                    f'{_ms(max(m["walls"]))} ms)')
            if vname == 'student alone':
                lines.append(f'- {name}, {vname}: {span}.')
                continue
            t = m['total']
            lines.append(
                f'- {name}, {vname}: {span}; the step costs '
                f'{t / base["total"]:.2f}x the student alone '
                f'(+{_ms(t - base["total"])} ms): teacher forward '
                f'{m["teacher"] / t:.0%}, student fwd+bwd '
                f'{(m["student_fwd"] + m["student_bwd"]) / t:.0%}, distill '
                f'losses {(m["distill_fwd"] + m["distill_bwd"]) / t:.0%}, '
                f'optimizer {m["optim"] / t:.0%} of the step; beyond the '
                'student alone + the teacher forward: '
                f'{_ms(t - base["total"] - m["teacher"])} ms '
                f'({(t - base["total"] - m["teacher"]) / t:+.1%} of the '
                'step).')
    return finish_report(lines + [''], t_start, args.out)


if __name__ == '__main__':
    main()

"""Speed and memory of the I2CKD loss (prototypes + triplets), forward+backward.

Prints a markdown report comparing, on the same inputs and in the same run:

* ``I2CKDLoss`` (the package's vectorised loss; ``--variant``: the shipped
  configs' options, default, or the literal defaults);
* the loop reference of the *same* loss, ``tests/reference_i2ckd.py`` (the
  one reference the tests use too: masked means one class at a time, a
  loop over class pairs); its value is checked against I2CKDLoss before it
  is timed;
* MMRazor's ``ChannelWiseDivergence`` on the same features;
* a memory-bound floor: one read of the student and the teacher feature
  and one write of a new tensor of their shape (``F_s + F_t``), i.e. the
  least memory traffic a loss with a dense student gradient needs;
* optionally (``--baseline REV``) ``I2CKDLoss`` as it was at git revision
  REV, interleaved with the current one, for before/after numbers;
* optionally (``--compile BACKEND``) the same loss under
  ``torch.compile(fullgraph=True)`` (values checked against eager first;
  the first calls, which compile, are warm-up);
* one full DeepLabV3-R101 -> DeepLabV3-R18 I2CKD distillation step (built
  from the Cityscapes config with CPU overrides), to state the loss's share
  of a training step.

Timing: median of ``--runs`` forward+backward calls after ``--warmup``
calls; the compared implementations are interleaved run by run so that load
from other processes hits them alike (CUDA: synchronised). ``--clock cpu``
times with ``time.process_time`` (this process's CPU time), which waiting
for a CPU taken by other jobs does not inflate (use it with ``--threads 1``
on a shared machine); the default is wall-clock time. Peak memory:
CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated before
the call; CPU: tensor memory from ``torch.profiler`` allocation events (the
running sum of every allocation and free during one forward+backward, its
maximum), i.e. the extra tensor memory the call needs on top of its inputs,
including the gradient it leaves behind. Python objects and allocator
caching are not counted.

Usage::

    python benchmarks/bench_i2ckd_loss.py --quick           # < 1 min
    python benchmarks/bench_i2ckd_loss.py --out benchmarks/results_cpu.md
"""
import argparse
import itertools
import os.path as osp
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Callable, Dict, List, Optional

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path.insert(0, osp.join(ROOT, 'tests'))  # reference_i2ckd
sys.path.insert(0, HERE)  # machine.py

import i2ckd_mm  # noqa: E402,F401  (compat shims before mmseg/mmrazor)
from mmrazor.models.losses import ChannelWiseDivergence  # noqa: E402

import reference_i2ckd  # noqa: E402
from machine import finish_report, machine_lines, op_counts  # noqa: E402
from i2ckd_mm.models.losses import I2CKDLoss  # noqa: E402

STEP_CONFIG = osp.join(
    ROOT, 'configs', 'i2ckd', 'i2ckd_bottleneck_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py')
IGNORE = 255


CLOCK = time.perf_counter  # --clock cpu: time.process_time
#: --variant: the loss options timed (the shipped configs' variant, or the
#: literal defaults)
VARIANTS = {
    'shipped': dict(normalize=True, margin=0.2, pull_weight=1.0),
    'literal': dict(),
}


# ---------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Extra bytes of tensor memory at the peak of one call of ``fn``."""
    if device.type == 'cuda':
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    # Every allocation (+bytes) and free (-bytes) of the CPU allocator, in
    # time order; the running sum's maximum is the peak above the start.
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]'),
                    key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events),
                                    initial=0))


def time_interleaved(fns: Dict[str, Callable[[], None]],
                     runs: Dict[str, int], warmup: int,
                     device: torch.device) -> Dict[str, float]:
    """Median seconds per call, the functions interleaved run by run."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        # the slow naive loop gets one warm-up call at most
        for _ in range(min(warmup, 1) if name == 'naive' else warmup):
            fn()
    for r in range(max(runs.values())):
        for name, fn in fns.items():
            if r >= runs[name]:
                continue
            _sync(device)
            t0 = CLOCK()
            fn()
            _sync(device)
            times[name].append(CLOCK() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------- the losses
def make_inputs(k: int, c: int, h: int, w: int, n: int, device,
                seed: int = 0):
    """Student/teacher features (N, C, h, w) and labels (N, 8h, 8w).

    Labels are uniform random per pixel with 5 % ignored, so every class is
    present in every image: the worst case for the K x K triplet part.
    """
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
    t = torch.randn(n, c, h, w, generator=g).to(device)
    gt = torch.randint(0, k, (n, 8 * h, 8 * w), generator=g)
    gt[torch.rand(gt.shape, generator=g) < 0.05] = IGNORE
    return s, t, gt.to(device)


def load_baseline(rev: str):
    """``I2CKDLoss`` of git revision ``rev``, imported from a temporary copy
    of its ``i2ckd_mm/models/losses`` files (not registered: the current
    class keeps the registry name).

    ``rev`` may also be a folder holding those files (``i2ckd_loss.py`` and
    ``prototypes.py``, e.g. exported with ``git show REV:PATH``): a copy of
    the work tree without ``.git`` (a GPU machine) has no revisions.
    """
    tmp = tempfile.mkdtemp(prefix='i2ckd_baseline_')
    pkg = types.ModuleType('i2ckd_baseline')
    pkg.__path__ = [tmp]
    sys.modules['i2ckd_baseline'] = pkg
    for name in ('prototypes', 'i2ckd_loss'):
        if osp.isdir(rev):
            with open(osp.join(rev, f'{name}.py')) as f:
                src = f.read()
        else:
            try:
                src = subprocess.check_output(
                    ['git', 'show',
                     f'{rev}:i2ckd_mm/models/losses/{name}.py'],
                    cwd=ROOT, text=True, stderr=subprocess.PIPE)
            except (OSError, subprocess.CalledProcessError) as e:
                raise FileNotFoundError(
                    f'baseline {rev!r}: neither a folder holding '
                    'i2ckd_loss.py and prototypes.py nor a git revision of '
                    f'{ROOT} ({getattr(e, "stderr", "") or e})') from None
        src = src.replace('@MODELS.register_module()', '')
        with open(osp.join(tmp, f'{name}.py'), 'w') as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location(
            f'i2ckd_baseline.{name}', osp.join(tmp, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules['i2ckd_baseline.i2ckd_loss'].I2CKDLoss


class LossCall:
    """One call of an I2CKD loss with no device wait inside, either API.

    A loss with ``compute`` (returns ``(loss, status)``; its ``forward``
    would wait for the device to raise at once) is called through
    ``compute``, and the status of the latest call is kept for
    :meth:`check` after timing. An older loss (``forward`` only, its own
    deferred ``check()``) is called as it is. ``compile_kwargs``: the same
    call under ``torch.compile(**compile_kwargs)`` (``compute``, or the
    module of an older loss).
    """

    def __init__(self, loss, compile_kwargs: Optional[dict] = None):
        self.loss = loss
        self.status = None
        target = loss.compute if hasattr(loss, 'compute') else loss
        self.fn = (target if compile_kwargs is None else
                   torch.compile(target, **compile_kwargs))

    def __call__(self, preds_S, preds_T, gt):
        out = self.fn(preds_S, preds_T, gt)
        if isinstance(out, tuple):
            out, self.status = out
        return out

    def check(self) -> None:
        """Raise what the loss found in the inputs (bad labels, NaN/Inf)."""
        if self.status is not None:
            self.loss.raise_for_status(self.status)
        elif hasattr(self.loss, 'check'):
            self.loss.check()


#: --compile-mode: the column prefix of each torch.compile mode
COMPILE_KEYS = {'default': 'compiled', 'reduce-overhead': 'compiled_ro'}


def fwd_bwd(loss_fn: Callable, s: torch.Tensor, *args) -> Callable[[], None]:
    def run():
        s.grad = None
        loss_fn(s, *args).backward()
    return run


def bench_loss_case(k, c, h, w, n, device, args, with_naive: bool,
                    baseline=None) -> dict:
    s, t, gt = make_inputs(k, c, h, w, n, device)
    options = VARIANTS[args.variant]
    i2ckd = LossCall(I2CKDLoss(num_classes=k, **options).to(device))
    calls = {'i2ckd': i2ckd}
    cwd = ChannelWiseDivergence(tau=1.0).to(device)
    sd = s.detach()
    fns = {
        'i2ckd': fwd_bwd(i2ckd, s, t, gt),
        'cwd': fwd_bwd(cwd, s, t),
        # read F_s and F_t, write a new tensor of their shape: the memory
        # traffic of reading both features and writing the gradient
        'floor': lambda: sd + t,
    }
    runs = {name: args.runs for name in fns}
    row = dict(k=k, c=c, h=h, w=w, n=n)
    with torch.no_grad():
        want = i2ckd(s, t, gt).item()

    def agree(what: str, loss_fn, rtol: float, grad: bool = False) -> float:
        """|loss_fn - I2CKDLoss| on these inputs; raise above ``rtol``.
        ``grad``: call with autograd on (a compiled loss: the graph it was
        compiled for, no second compilation for no_grad)."""
        with torch.set_grad_enabled(grad):
            got = loss_fn(s, t, gt).item()
        if abs(got - want) > rtol * max(1.0, abs(want)):
            raise AssertionError(f'{what} disagree: {got} vs {want} at '
                                 f'K={k} C={c} {h}x{w} N={n}')
        return abs(got - want)

    if baseline is not None:
        calls['before'] = LossCall(
            baseline(num_classes=k, **options).to(device))
        row['before_check'] = agree('baseline and I2CKDLoss',
                                    calls['before'], 1e-5)
        fns['before'] = fwd_bwd(calls['before'], s, t, gt)
        runs['before'] = args.runs
    if args.compile:
        # a new loss instance per row: without a reset dynamo counts every
        # row's trace as a recompile of the same code (and fails at 8)
        torch.compiler.reset()
        for mode in args.compile_mode or ['default']:
            key = COMPILE_KEYS[mode]
            calls[key] = LossCall(
                I2CKDLoss(num_classes=k, **options).to(device),
                dict(backend=args.compile, fullgraph=True, dynamic=False,
                     mode=None if mode == 'default' else mode))
            fns[key] = fwd_bwd(calls[key], s, t, gt)
            t0 = time.perf_counter()
            fns[key]()  # compiles forward and backward
            _sync(device)
            row[f'{key}_compile_s'] = time.perf_counter() - t0
            agree('compiled and eager I2CKDLoss', calls[key], 1e-5,
                  grad=True)
            runs[key] = args.runs
    if with_naive:
        def naive(a, b, y):
            return reference_i2ckd.loss(a, b, y, k, ignore_index=IGNORE,
                                        **options)

        row['naive_check'] = agree('naive loop and I2CKDLoss', naive, 1e-4)
        fns['naive'] = fwd_bwd(naive, s, t, gt)
        runs['naive'] = args.naive_runs
    med = time_interleaved(fns, runs, args.warmup, device)
    row.update({f'{name}_ms': v * 1e3 for name, v in med.items()})
    measured = ('i2ckd', 'cwd', 'before') + tuple(COMPILE_KEYS.values())
    for name in measured + ('naive', ):
        if name in fns:
            row[f'{name}_mib'] = peak_memory(fns[name], device) / 2**20
    for name in measured:
        if name in fns:  # operators and host waits of one call
            row[f'{name}_ops'], row[f'{name}_waits'] = op_counts(fns[name])
    for call in calls.values():
        call.check()
    s.grad = None
    return row


# ------------------------------------------------------------ primitives
def bench_primitives(k: int, c: int, h: int, w: int, n: int, device,
                     args) -> List[str]:
    """The passes over the features that the loss cannot avoid, each timed
    alone with the same clock and interleaving, against the floor: a lower
    bound for any loss built from these PyTorch primitives."""
    g = torch.Generator().manual_seed(0)
    hw = h * w
    f = torch.randn(n, c, hw, generator=g).to(device)
    t = torch.randn(n, c, hw, generator=g).to(device)
    bins = torch.randint(0, k + 1, (n, hw), generator=g).to(device)
    onehot = (bins.unsqueeze(1) == torch.arange(k, device=device).view(
        1, -1, 1)).float()
    table = torch.randn(n, k + 1, c, generator=g).to(device)
    grad = torch.empty_like(f)
    f_t = f.transpose(1, 2).contiguous()
    index = bins.unsqueeze(1).expand(n, c, hw)

    def backward_gather():  # a class-sum backward: one row per pixel
        for i in range(n):
            torch.index_select(table[i].t(), 1, bins[i], out=grad[i])

    def rows_scatter():  # scatter_add's expanded-index path, pixel-major
        out = f.new_zeros(n, k + 1, c)
        for i in range(n):
            out[i].scatter_add_(0, bins[i].unsqueeze(1).expand(hw, c),
                                f_t[i])

    fns = {
        'floor': lambda: f + t,
        'scatter': lambda: f.new_zeros(n, c, k + 1).scatter_add_(2, index, f),
        'bmm': lambda: torch.bmm(onehot, f.transpose(1, 2)),
        'gather': backward_gather,
        'transpose': lambda: f.transpose(1, 2).contiguous(),
        'rows': rows_scatter,
    }
    med = time_interleaved(fns, {name: args.runs for name in fns},
                           args.warmup, device)
    ms = {name: v * 1e3 for name, v in med.items()}
    sums = min(ms['scatter'], ms['bmm'])
    bound = 2 * sums + ms['gather']
    what = {
        'floor': '`F_s + F_t` into a new tensor (the floor)',
        'scatter': 'class sums of one map by `scatter_add` (forward, '
                   'K >= 16 on CPU)',
        'bmm': 'class sums of one map by one-hot `bmm` (forward, GPU and '
               'K < 16 on CPU)',
        'gather': 'the student gradient: `index_select` of the class '
                  'gradients (backward)',
        'transpose': 'a pixel-major copy of one map (what a row-wise '
                     'reduction would need first)',
        'rows': 'class sums by `scatter_add` over rows of the pixel-major '
                'copy (the copy not counted)',
    }
    lines = [f'### The loss\'s unavoidable passes on {device} ({k} classes, '
             f'{c} channels, {h}x{w}, batch {n})', '',
             '| primitive | ms (median) | / floor |', '|---|---:|---:|']
    for name, v in ms.items():
        lines.append(f'| {what[name]} | {v:.2f} | {v / ms["floor"]:.2f}x |')
    lines += ['', f'Lower bound from these primitives: class sums of the '
              f'student and of the teacher map (the faster of scatter/bmm, '
              f'{sums:.2f} ms each) and the gradient ({ms["gather"]:.2f} '
              f'ms) = {bound:.2f} ms = **{bound / ms["floor"]:.1f}x the '
              'floor**, before any other operation of the loss.', '']
    return lines


# -------------------------------------------------------- distillation step
def _bn_not_syncbn(cfg) -> None:
    """SyncBN needs a process group; a one-process CPU step uses BN."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
        for v in cfg.values():
            _bn_not_syncbn(v)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            _bn_not_syncbn(v)


def _offline(model_cfg, size: int) -> None:
    """No pretrained downloads, BN instead of SyncBN, pad to size x size."""
    _bn_not_syncbn(model_cfg)
    model_cfg['pretrained'] = None
    model_cfg['backbone']['init_cfg'] = None
    model_cfg['data_preprocessor']['size'] = (size, size)


def build_step_model(size: int, tmpdir: str):
    """The config's I2CKDDistill with CPU overrides and a random teacher
    checkpoint saved to (and loaded from) a temporary file."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmrazor.registry import MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(STEP_CONFIG)
    model_cfg = cfg.model
    _offline(model_cfg.architecture, size)
    # the teacher is given by its MMSeg recipe (model.teacher.cfg_path)
    teacher_cfg = get_config(model_cfg.teacher.cfg_path).model
    _offline(teacher_cfg, size)
    teacher_cfg['_scope_'] = 'mmseg'
    teacher = SEG_MODELS.build(teacher_cfg)
    ckpt = osp.join(tmpdir, 'random_teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, ckpt)
    del teacher
    model_cfg.teacher = teacher_cfg
    model_cfg.teacher_ckpt = ckpt
    return MODELS.build(model_cfg), teacher_cfg.decode_head.num_classes


def make_step_batch(size: int, n: int, num_classes: int, seed: int = 0):
    """Random images and blocky labels (32x32-pixel regions, 5 % ignored)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g,
                                    dtype=torch.uint8))
        blocks = torch.randint(0, num_classes, (1, 1, size // 32, size // 32),
                               generator=g).float()
        labels = torch.nn.functional.interpolate(
            blocks, size=(size, size), mode='nearest')[0].long()
        labels[torch.rand(labels.shape, generator=g) < 0.05] = IGNORE
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(dict(img_shape=(size, size),
                                 ori_shape=(size, size),
                                 pad_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def bench_step(size: int, n: int, runs: int, args) -> dict:
    from mmengine.optim import OptimWrapper
    with tempfile.TemporaryDirectory() as tmpdir:
        model, k = build_step_model(size, tmpdir)
    model.train()
    optim = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = make_step_batch(size, n, k)

    def step():
        model.train_step(data, optim)

    # warm-up step, profiled for its peak tensor memory
    step_mib = peak_memory(step, torch.device('cpu')) / 2**20
    times = []
    for _ in range(runs):
        t0 = CLOCK()
        step()
        times.append(CLOCK() - t0)
    step_s = statistics.median(times)

    # The loss alone on the step's own recorded features and labels.
    distiller = model.distiller
    with torch.no_grad():
        s = distiller.get_record('feat', True, connector='loss_i2ckd_sfeat')
        t = distiller.get_record('feat', False)
    s = s.detach().requires_grad_()
    gt = model.stack_labels(
        t.new_empty(n, 3, size, size),
        model.data_preprocessor(data, True)['data_samples'])
    loss = distiller.distill_losses['loss_i2ckd']
    fns = {'loss': fwd_bwd(loss, s, t, gt)}
    loss_s = time_interleaved(fns, {'loss': args.runs}, args.warmup,
                              torch.device('cpu'))['loss']
    loss_mib = peak_memory(fns['loss'], torch.device('cpu')) / 2**20
    return dict(size=size, n=n, runs=runs, step_s=step_s, step_times=times,
                step_mib=step_mib, loss_ms=loss_s * 1e3, loss_mib=loss_mib,
                feat=tuple(t.shape), k=k)


# ------------------------------------------------------------------ report
def loss_table(rows: List[dict], device: str) -> List[str]:
    before = any('before_ms' in r for r in rows)
    compiled = [(key, mode) for mode, key in COMPILE_KEYS.items()
                if any(f'{key}_ms' in r for r in rows)]

    def label(key, mode):  # 'compiled' / 'compiled (reduce-overhead)'
        return 'compiled' if key == 'compiled' else f'compiled ({mode})'

    out = [
        f'### Loss forward+backward on {device}', '',
        '| classes | channels | feature h x w | batch | floor ms | I2CKD ms '
        '| I2CKD / floor |' + (' before ms | before / floor |' if before
                               else '') +
        ' I2CKD / CWD | I2CKD MiB |' + (' before MiB |' if before else '') +
        ' CWD ms | CWD MiB | ops: I2CKD' + (' / before' if before else '') +
        ' / CWD | host waits: I2CKD' + (' / before' if before else '') +
        ' | naive loop ms | naive MiB | I2CKD speed-up vs naive |' +
        ''.join(f' {label(*km)} ms | {label(*km)} / CWD | {label(*km)} / '
                f'floor | {label(*km)} MiB | {label(*km)} ops | '
                f'{label(*km)} compile s |' for km in compiled),
        '|---:|---:|---|---:|---:|---:|---:|' + ('---:|---:|' if before
                                                  else '') +
        '---:|---:|' + ('---:|' if before else '') +
        '---:|---:|---:|---:|---:|---:|---:|' +
        '---:|---:|---:|---:|---:|---:|' * len(compiled)
    ]
    for r in rows:
        naive = ('-', '-', '-')
        if 'naive_ms' in r:
            naive = (f'{r["naive_ms"]:.1f}', f'{r["naive_mib"]:.1f}',
                     f'{r["naive_ms"] / r["i2ckd_ms"]:.1f}x')
        cols = [f'{r["k"]}', f'{r["c"]}', f'{r["h"]}x{r["w"]}', f'{r["n"]}',
                f'{r["floor_ms"]:.2f}', f'{r["i2ckd_ms"]:.2f}',
                f'**{r["i2ckd_ms"] / r["floor_ms"]:.1f}x**']
        if before:
            cols += [f'{r["before_ms"]:.2f}',
                     f'{r["before_ms"] / r["floor_ms"]:.1f}x']
        cols += [f'{r["i2ckd_ms"] / r["cwd_ms"]:.2f}x',
                 f'{r["i2ckd_mib"]:.1f}']
        if before:
            cols += [f'{r["before_mib"]:.1f}']
        cols += [f'{r["cwd_ms"]:.2f}', f'{r["cwd_mib"]:.1f}',
                 ' / '.join(str(r[f'{x}_ops']) for x in (
                     ('i2ckd', 'before', 'cwd') if before else
                     ('i2ckd', 'cwd'))),
                 ' / '.join(str(r[f'{x}_waits']) for x in (
                     ('i2ckd', 'before') if before else ('i2ckd', ))),
                 *naive]
        for key, _ in compiled:
            cols += [f'{r[f"{key}_ms"]:.2f}',
                     f'{r[f"{key}_ms"] / r["cwd_ms"]:.2f}x',
                     f'{r[f"{key}_ms"] / r["floor_ms"]:.1f}x',
                     f'{r[f"{key}_mib"]:.1f}', f'{r[f"{key}_ops"]}',
                     f'{r[f"{key}_compile_s"]:.1f}']
        out.append('| ' + ' | '.join(cols) + ' |')
    return out


def main(argv: Optional[List[str]] = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='tiny grid and a 128x128 step (< 1 min)')
    p.add_argument('--device', default='auto',
                   choices=('auto', 'cpu', 'cuda'),
                   help='auto: CPU, and CUDA when available')
    p.add_argument('--out', help='also write the markdown report here')
    p.add_argument('--runs', type=int, default=7)
    p.add_argument('--naive-runs', type=int, default=3,
                   help='timed runs of the naive loop (0: no naive loop)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int,
                   help='torch.set_num_threads (default: torch default)')
    p.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                   help='cpu: time.process_time, robust to other jobs '
                   'taking the CPU (with --threads 1)')
    p.add_argument('--variant', choices=tuple(VARIANTS), default='shipped',
                   help='loss options: the shipped configs\' (normalised, '
                   'margin 0.2, pull 1; default) or the literal defaults')
    p.add_argument('--baseline', metavar='REV',
                   help='also time I2CKDLoss of this git revision (or of '
                   'the i2ckd_loss.py and prototypes.py in this folder), '
                   'interleaved (before/after columns)')
    p.add_argument('--compile', metavar='BACKEND',
                   help='also time the loss under torch.compile(fullgraph='
                   'True) with this backend (inductor: fused kernels; '
                   'aot_eager: the same operators, a check)')
    p.add_argument('--compile-mode', nargs='+', choices=tuple(COMPILE_KEYS),
                   help='torch.compile modes of --compile, one column group '
                   'each (default: default; reduce-overhead: CUDA graphs, '
                   'on a GPU; needs the inductor backend)')
    p.add_argument('--classes', type=int, nargs='+',
                   help='class counts (default 2 19 150; quick 2 19)')
    p.add_argument('--channels', type=int, nargs='+',
                   help='channel counts (default 128 256 512)')
    p.add_argument('--batches', type=int, nargs='+',
                   help='batch sizes (default 2 4)')
    p.add_argument('--sizes', nargs='+', metavar='HxW',
                   help='feature sizes (default 64x128 128x256)')
    p.add_argument('--primitives', action='store_true',
                   help='only time the passes the loss cannot avoid (class '
                   'sums, gradient gather, ...) against the floor, at the '
                   'first --classes/--channels/--sizes/--batches value')
    p.add_argument('--no-step', action='store_true',
                   help='skip the full distillation step')
    p.add_argument('--step-size', type=int,
                   help='step input size (default 512, quick 128)')
    p.add_argument('--step-runs', type=int,
                   help='timed steps (default 2, quick 1)')
    args = p.parse_args(argv)
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == 'cpu':
        CLOCK = time.process_time
    baseline = load_baseline(args.baseline) if args.baseline else None
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False')
    devices = {'cpu': ['cpu'], 'cuda': ['cuda'],
               'auto': ['cpu'] + (['cuda'] if torch.cuda.is_available()
                                  else [])}[args.device]
    if args.quick:
        classes, channels, sizes, batches = (2, 19), (128, 256), \
            ((32, 64), (64, 128)), (2, )
        args.runs, args.naive_runs, args.warmup = 3, 2, 1
    else:
        classes, channels, sizes, batches = (2, 19, 150), (128, 256, 512), \
            ((64, 128), (128, 256)), (2, 4)
    if args.classes:
        classes = tuple(args.classes)
    if args.channels:
        channels = tuple(args.channels)
    if args.batches:
        batches = tuple(args.batches)
    if args.sizes:
        sizes = tuple(hw.lower().split('x') for hw in args.sizes)
        if not all(len(hw) == 2 and all(v.isdigit() for v in hw)
                   for hw in sizes):
            p.error(f'--sizes takes HxW values, got {args.sizes}')
        sizes = tuple((int(h), int(w)) for h, w in sizes)
    step_size = args.step_size or (128 if args.quick else 512)
    step_runs = args.step_runs or (1 if args.quick else 2)

    lines = ['# I2CKD loss: speed and memory', ''] + machine_lines()
    lines += [
        f'- command: `python benchmarks/bench_i2ckd_loss.py '
        f'{" ".join(argv if argv is not None else sys.argv[1:])}`',
        f'- timing: median of {args.runs} forward+backward runs after '
        f'{args.warmup} warm-up runs (naive loop: {args.naive_runs} runs), '
        'implementations interleaved run by run; clock: ' +
        ('CPU time of this process (time.process_time)' if args.clock ==
         'cpu' else 'wall (time.perf_counter)'),
        '- floor: `F_s + F_t` into a new tensor, one read of both features '
        'and one write of their shape (the gradient), median like the rest; '
        '"I2CKD / floor" is the goal metric (issue 10: <= 3x)',
        '- ops: top-level PyTorch operators of one forward+backward (those '
        'no other aten operator issued: one host round-trip, and on a GPU '
        'about one kernel launch, each); host waits: operators that bring '
        'a value to the host (`.item()`, `bool()`, `nonzero`, boolean '
        'indexing, ...), a device wait each on a GPU; both counted with '
        'torch.profiler on the CPU (`machine.op_counts`)',
        '- peak memory: CPU = peak of the running sum of tensor allocations'
        ' and frees (torch.profiler memory events) during one '
        'forward+backward, above the inputs (frees of tensors that existed '
        'before the call are not credited, so it errs high); CUDA = '
        'torch.cuda.max_memory_allocated minus the memory allocated before',
        '- inputs: fp32 student/teacher features N x C x h x w '
        '(student requires grad), labels N x 8h x 8w uniform random per '
        'pixel with 5 % ignored, so every class is present in every image '
        '(worst case for the K x K triplets); I2CKDLoss options: '
        f'{args.variant} {VARIANTS[args.variant] or "(defaults)"}; '
        'CWD = MMRazor ChannelWiseDivergence(tau=1) on the same features; '
        'naive loop = tests/reference_i2ckd.py' +
        (f'; before = I2CKDLoss at git revision {args.baseline} (values '
         'checked equal to 1e-5 first)' if args.baseline else '') +
        (f'; compiled = the same loss under torch.compile(backend='
         f'{args.compile!r}, fullgraph=True, dynamic=False) in mode(s) '
         f'{", ".join(args.compile_mode or ["default"])}, its values '
         'checked equal to eager first; the first call (which compiles '
         'forward and backward: "compile s") is not timed' if args.compile
         else '') + '; a loss with `compute` (returns loss and status) is '
        'timed through it, the status read once after timing (no device '
        'wait inside a timed call); an older loss through its forward',
        '',
    ]
    t_start = time.time()
    if args.primitives:
        for dev_name in devices:
            lines += bench_primitives(classes[0], channels[0], *sizes[0],
                                      batches[0], torch.device(dev_name),
                                      args)
        return finish_report(lines, t_start, args.out)
    target = None
    for dev_name in devices:
        device = torch.device(dev_name)
        rows = []
        for k, c, (h, w), n in itertools.product(classes, channels, sizes,
                                                 batches):
            # The naive loop keeps one full-size gradient per class and
            # image alive in autograd: at 150 classes and 512 channels it
            # needs > 20 GB (it was OOM-killed here), so 150 classes run at
            # 128 channels only.
            with_naive = (args.naive_runs > 0 and n == batches[0]
                          and (h, w) == sizes[-1 if args.quick else 0]
                          and (k < 150 or c == 128))
            row = bench_loss_case(k, c, h, w, n, device, args, with_naive,
                                  baseline)
            rows.append(row)
            if args.out:  # the rows so far survive a run cut short
                with open(args.out, 'w') as f:
                    f.write('\n'.join(lines + loss_table(rows, dev_name) + [
                        '', f'(rows so far: {len(rows)}; the run was still '
                        'going)', '']))
            print(f'[{dev_name}] K={k} C={c} {h}x{w} N={n}: I2CKD '
                  f'{row["i2ckd_ms"]:.2f} ms' +
                  (f', naive {row["naive_ms"]:.1f} ms' if with_naive else ''),
                  file=sys.stderr, flush=True)
            if (k, c, h, w, n) == (19, 256, 64, 128, 2):
                target = target or (dev_name, row)
        lines += loss_table(rows, dev_name) + ['']
    if target:
        dev_name, r = target
        ratio = r['i2ckd_ms'] / r['floor_ms']
        line = (f'**Target (19 classes, 256 channels, 64x128, batch 2, '
                f'{dev_name})**: I2CKD {r["i2ckd_ms"]:.2f} ms = '
                f'**{ratio:.1f}x the floor** ({r["floor_ms"]:.2f} ms; goal '
                f'<= 3x: {"met" if ratio <= 3 else "NOT met"})')
        if 'before_ms' in r:
            line += (f', before {r["before_ms"]:.2f} ms = '
                     f'{r["before_ms"] / r["floor_ms"]:.1f}x')
        if 'naive_ms' in r:
            line += (f'; naive loop {r["naive_ms"]:.1f} ms '
                     f'({r["naive_ms"] / r["i2ckd_ms"]:.1f}x slower, values '
                     f'agree to {r["naive_check"]:.1e})')
        lines += [line + '.', '']
    if not args.no_step:
        print(f'[cpu] distillation step {step_size}x{step_size} ...',
              file=sys.stderr, flush=True)
        try:
            st = bench_step(step_size, 2, step_runs, args)
        except Exception as e:  # noqa: B902  (said in the report)
            st = None
            lines += [f'### Distillation step: FAILED to build/run: '
                      f'{type(e).__name__}: {e}', '']
            print(f'[cpu] step failed: {e!r}', file=sys.stderr)
    if not args.no_step and st is not None:
        share = st['loss_ms'] / 1e3 / st['step_s'] * 100
        lines += [
            f'### One DeepLabV3-R101 -> R18 I2CKD step on cpu '
            f'({step_size}x{step_size}, batch 2)', '',
            f'Built from `{osp.relpath(STEP_CONFIG, ROOT)}` with BN instead '
            f'of SyncBN, data_preprocessor size {step_size}x{step_size}, no '
            'pretrained backbone, a random teacher checkpoint saved to and '
            'loaded from a temporary file; `model.train_step` (teacher '
            'forward, student forward+backward, connector, loss, SGD '
            f'update) timed {st["runs"]} times after 1 warm-up step.', '',
            '| step s (median) | step runs s | step peak MiB | feature '
            '(teacher) | I2CKD loss fwd+bwd ms | loss peak MiB | loss share '
            'of step |', '|---:|---|---:|---|---:|---:|---:|',
            f'| {st["step_s"]:.2f} | '
            f'{", ".join(f"{x:.2f}" for x in st["step_times"])} | '
            f'{st["step_mib"]:.0f} | {"x".join(map(str, st["feat"]))} | '
            f'{st["loss_ms"]:.2f} | {st["loss_mib"]:.1f} | '
            f'**{share:.2f} %** (target <= 5 %: '
            f'{"met" if share <= 5 else "NOT met"}) |', ''
        ]
    return finish_report(lines, t_start, args.out)


if __name__ == '__main__':
    main()

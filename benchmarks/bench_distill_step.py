"""What distillation costs: a student-alone step vs an I2CKD step, by part.

The toy configs at 64x64 and the Cityscapes R101 -> R18 config at 512x1024,
each step split into data preprocessing, the teacher's forward, the
student's forward + backward, the distillation losses and the optimizer; the
operators and host waits of a step by part; the teacher's forward alone per
teacher precision. Method and commands: benchmarks/README.md.
"""
import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.benchmark import set_torch_threads

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import harness
from harness import build_model, make_batch, md_table, rounds
from i2ckd_mm.models.algorithms.i2ckd_distill import TEACHER_PRECISIONS
from i2ckd_mm.models.losses import I2CKDLoss
from toy import toy_configs

CITYSCAPES = harness.config_path(
    'i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_'
    'cityscapes-512x1024.py')
#: I2CKD + CWD on the logits: without its I2CKD loss, CWD alone (--big-cwd)
CITYSCAPES_CWD = harness.config_path(
    'i2ckd-cwd_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '8xb2-40k_cityscapes-512x1024.py')
#: Part names of a step, in report order.
PARTS = ('pre', 'teacher', 'student_fwd', 'student_bwd', 'distill_fwd',
         'distill_bwd', 'optim')
#: The loss of the "before" rows: the one before the rewrite without waits.
BASELINE_REV = '6829419'
STEP_COLS = [
    'setting', 'variant', 'runs', 'step ms: median (range)',
    'plain train_step ms', 'vs student alone',
    'beyond student alone + teacher fwd ms (share)', '(a) teacher fwd ms (share)',
    '(b) student fwd+bwd ms (share): fwd + bwd',
    '(c) distill losses ms (share): fwd + bwd', 'optimizer ms',
    'data preproc. ms', 'parts/total', 'split check']
CENSUS_COLS = [
    'setting', 'variant', 'ops: teacher fwd', 'ops: student fwd + bwd',
    'ops: distill losses fwd + bwd', 'host waits: distill losses',
    'host waits: rest of the step (optimizer)']
TEACHER_COLS = [
    'teacher model, input', 'teacher', 'runs', 'forward ms (median)',
    'vs first', 'peak tensor memory MiB', 'vs first',
    'max feature Δ vs first (rel.)', 'records as']


def use_baseline_loss(alg, baseline_cls, cfg_path: str) -> None:
    """Replace every I2CKDLoss of ``alg`` by ``baseline_cls`` with the
    config's options and class count."""
    from mmengine.config import Config
    cfgs = Config.fromfile(cfg_path).model.distiller.distill_losses
    losses = alg.distiller.distill_losses
    names = [n for n, x in losses.items() if isinstance(x, I2CKDLoss)]
    if not names:  # a "before" row that is the current loss would mislead
        raise ValueError(f'no I2CKDLoss in {cfg_path} to replace')
    for name in names:
        kwargs = {k: v for k, v in cfgs[name].items() if k != 'type'}
        losses[name] = baseline_cls(
            **kwargs, num_classes=losses[name].num_classes).to(
                next(alg.parameters()).device)


# ------------------------------------------------------- the instrumented step
@contextlib.contextmanager
def forward_timers(alg, clock, parts: Dict[str, float]):
    """Add the teacher's, the student's and the distill losses' forward time
    of ``alg``'s calls in the block to ``parts``, each part also a
    ``record_function('part::<name>')`` range for the operator census."""
    def timed(part, fn, before=None):
        def run(*args, **kwargs):
            if before:
                before(alg)
            with torch.profiler.record_function(f'part::{part}'):
                t0 = clock()
                out = fn(*args, **kwargs)
                parts[part] += clock() - t0
            return out
        return run

    # instance attributes win over the class methods; the student's forward
    # is done when the losses run: they read aliases of its records
    patched = [(alg, 'teacher_forward', 'teacher', None),
               (alg.student, 'forward', 'student_fwd', None),
               (alg.distiller, 'compute_distill_losses', 'distill_fwd',
                alias_student_records)]
    for obj, attr, part, before in patched:
        setattr(obj, attr, timed(part, getattr(obj, attr), before))
    try:
        yield
    finally:
        for obj, attr, _, _ in patched:
            delattr(obj, attr)


def _walk(x, fn):
    """``fn`` applied to every tensor of a nested record (same nesting)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_walk(y, fn) for y in x)
    if isinstance(x, dict):
        return {k: _walk(v, fn) for k, v in x.items()}
    return x


def alias_student_records(alg) -> None:
    """Replace each recorded student tensor by an alias (``view_as``) that
    only the distill losses read: the distill backward phase stops there."""
    for recorder in alg.distiller.student_recorders.recorders.values():
        recorder.data_buffer[:] = [
            _walk(x, lambda t: t.view_as(t) if t.requires_grad else t)
            for x in recorder.data_buffer]


def recorded_student_tensors(alg) -> List[torch.Tensor]:
    """The recorded student tensors that carry a gradient, each once."""
    out = []

    def keep(t):
        if t.requires_grad and all(t is not y for y in out):
            out.append(t)

    for recorder in alg.distiller.student_recorders.recorders.values():
        _walk(recorder.data_buffer, keep)
    return out


def split_backward(alg, losses: Dict[str, torch.Tensor], clock,
                   parts: Dict[str, float]) -> None:
    """``total.backward()`` in two equivalent phases (distill losses to the
    recorded student tensors, then the student; benchmarks/README.md)."""
    if any(not k.startswith(('student.', 'distill.')) for k in losses):
        raise KeyError(f'unexpected loss keys: {sorted(losses)}')
    student_total, distill_total = (alg.parse_losses(
        {k: v for k, v in losses.items() if k.startswith(prefix)})[0]
        for prefix in ('student.', 'distill.'))
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


def instrumented_step(model, optim, data: dict, clock,
                      update: bool = True) -> Dict[str, float]:
    """One training step timed by part: seconds per part and ``total``;
    ``update=False`` keeps the gradients, skips the optimizer."""
    parts = defaultdict(float)
    t_start = clock()
    batch = model.data_preprocessor(data, True)
    t = clock()
    parts['pre'] += t - t_start
    if hasattr(model, 'distiller'):
        with forward_timers(model, clock, parts):
            losses = model(**batch, mode='loss')
        split_backward(model, losses, clock, parts)
    else:
        with torch.profiler.record_function('part::student_fwd'):
            total, _ = model.parse_losses(model(**batch, mode='loss'))
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
    return dict(parts)


def split_check(alg, optim, data: dict, clock) -> float:
    """max |g_split - g_plain| / max |g_plain| over the parameters'
    gradients of one step, dropout masks seeded alike."""
    grads = []
    for split in (False, True):
        optim.zero_grad()
        torch.manual_seed(0)
        if split:
            instrumented_step(alg, optim, data, clock, update=False)
        else:
            alg.parse_losses(alg(**alg.data_preprocessor(data, True),
                                 mode='loss'))[0].backward()
        grads.append({n: p.grad.clone() for n, p in alg.named_parameters()
                      if p.grad is not None})
    optim.zero_grad()
    plain, split = grads
    if plain.keys() != split.keys():
        raise AssertionError('split backward reached other parameters: '
                             f'{sorted(plain.keys() ^ split.keys())}')
    scale = max(float(g.abs().max()) for g in plain.values())
    return max(float((split[n] - g).abs().max())
               for n, g in plain.items()) / scale


def bench_setting(variants: Dict[str, tuple], data: dict, runs: int,
                  warmup: int, plain: bool, clock, log) -> Dict[str, dict]:
    """Median parts of each variant (name -> (model, optim)), interleaved
    (with ``plain``: each variant's uninstrumented train_step too)."""
    def plain_step(model, optim):
        model.train_step(data, optim)

    cases = {}
    for name, (model, optim) in variants.items():
        cases[name] = (lambda m=model, o=optim:
                       instrumented_step(m, o, data, clock))
        if plain:
            cases[f'{name} (plain)'] = (lambda m=model, o=optim:
                                        plain_step(m, o))
    got = rounds(
        cases, runs, {n: 0 if n.endswith('(plain)') else warmup
                      for n in cases}, clock,
        lambda r, out: log(f'  run {r + 1}/{runs}: ' + ', '.join(
            f'{n} {out[n][-1]["total"]:.3f} s' for n in variants)))
    result = {}
    for name in variants:
        s = got[name]
        med = {p: statistics.median(x.get(p, 0.0) for x in s)
               for p in PARTS + ('total', )}
        med['coverage'] = statistics.median(
            sum(x.get(p, 0.0) for p in PARTS) / x['total'] for x in s)
        med['plain'] = (statistics.median(got[f'{name} (plain)'])
                        if plain else None)
        med.update(runs=runs, totals=[x['total'] for x in s])
        result[name] = med
    return result


# ------------------------------------------------------ teacher settings
def teacher_setting(text: str) -> dict:
    """``'bf16'`` -> ``dict(teacher_precision='bf16')``; ``+cl`` adds
    ``teacher_channels_last=True``."""
    precision, _, suffix = text.partition('+')
    if suffix not in ('', 'cl'):
        raise argparse.ArgumentTypeError(
            f'{text!r}: a teacher setting is fp32, bf16 or fp16, optionally '
            'with +cl (channels_last)')
    if precision not in TEACHER_PRECISIONS:
        raise argparse.ArgumentTypeError(
            f'{text!r}: teacher precision must be one of '
            f'{sorted(TEACHER_PRECISIONS)}')
    return dict(teacher_precision=precision,
                **(dict(teacher_channels_last=True) if suffix else {}))


def teacher_label(options: dict) -> str:
    """'bf16 teacher', 'fp32 channels_last teacher', ..."""
    return (options['teacher_precision'] + ' channels_last' *
            bool(options.get('teacher_channels_last')) + ' teacher')


def bench_teacher(cfg_path: str, size: Tuple[int, int], batch: int,
                  settings: List[dict], runs: int, device: torch.device,
                  clock) -> List[dict]:
    """``alg.teacher_forward`` alone per teacher setting, same weights:
    median time, peak tensor memory of one call, the largest difference of
    the recorded teacher tensors from the first setting's (relative)."""
    h, w = size
    models = {}
    for options in settings:
        torch.manual_seed(0)  # the same teacher weights for every setting
        alg, _, k = build_model(cfg_path, size, device, options=options)
        models[teacher_label(options)] = alg.eval()
    teachers = list(models)
    data = models[teachers[0]].data_preprocessor(
        make_batch(h, w, batch, k, 32), True)

    def forward(alg):
        def run():
            with torch.no_grad():
                alg.teacher_forward(data['inputs'], data['data_samples'])
        return run

    # the CPU's fp16 kernels take ~75x fp32: one run
    times = rounds({t: forward(models[t]) for t in teachers}, {
        t: 1 if device.type == 'cpu' and t.startswith('fp16') else runs
        for t in teachers}, 1, clock)
    records = {t: [x for r in models[t].distiller.teacher_recorders
                   .recorders.values() for x in r.data_buffer
                   if isinstance(x, torch.Tensor) and x.is_floating_point()]
               for t in teachers}
    ref = records[teachers[0]]
    scale = max(float(x.abs().max()) for x in ref)
    return [dict(
        label=t, h=h, w=w, batch=batch,
        runs=len(times[t]), ms=statistics.median(times[t]) * 1e3,
        peak=harness.peak_memory(forward(models[t]), device),
        diff=max(float((x.float() - y.float()).abs().max())
                 for x, y in zip(records[t], ref)) / scale,
        dtypes=sorted({str(x.dtype)[6:] for x in records[t]}))
        for t in teachers]


# ------------------------------------------------------------------ report
def _ms(x: float) -> str:
    return f'{x * 1e3:.1f}'


def step_row(setting: str, name: str, m: dict, base: float,
             check: Optional[float]) -> list:
    """One row of the step table (``base``: the student alone's step)."""
    distill = name != 'student alone'
    t = m['total']
    beyond = t - base - m['teacher']
    student = m['student_fwd'] + m['student_bwd']
    dist = m['distill_fwd'] + m['distill_bwd']
    return [
        setting, name, m['runs'],
        f'{_ms(t)} ({_ms(min(m["totals"]))}-{_ms(max(m["totals"]))})',
        _ms(m['plain']) if m['plain'] is not None else '-',
        f'{t / base:.2f}x',
        f'{_ms(beyond)} ({beyond / t:+.1%})' if distill else '-',
        f'{_ms(m["teacher"])} ({m["teacher"] / t:.0%})' if distill else '-',
        f'{_ms(student)} ({student / t:.0%}): '
        f'{_ms(m["student_fwd"])} + {_ms(m["student_bwd"])}',
        f'{_ms(dist)} ({dist / t:.0%}): {_ms(m["distill_fwd"])} + '
        f'{_ms(m["distill_bwd"])}' if distill else '-',
        _ms(m['optim']), _ms(m['pre']), f'{m["coverage"]:.3f}',
        f'{check:.1e}' if check is not None else '-']


def census_row(setting: str, name: str, c: Dict[str, int]) -> list:
    """One row of the operator census."""
    distill = 'ops_distill_fwd' in c
    waits = sum(v for k, v in c.items() if k.startswith('waits_'))
    dwaits = c.get('waits_distill_fwd', 0) + c.get('waits_distill_bwd', 0)
    return [
        setting, name, c['ops_teacher'] if distill else '-',
        f'{c.get("ops_student_fwd", 0)} + {c.get("ops_student_bwd", 0)}',
        f'{c.get("ops_distill_fwd", 0)} + {c.get("ops_distill_bwd", 0)}'
        if distill else '-', dwaits if distill else '-',
        f'{waits - dwaits} ({c.get("waits_optim", 0)})']


def teacher_row(name: str, r: dict, base: dict) -> list:
    """One row of the teacher-forward table."""
    return [f'{name}, {r["h"]}x{r["w"]}, batch {r["batch"]}', r['label'],
            r['runs'], f'{r["ms"]:.1f}', f'{r["ms"] / base["ms"]:.2f}x',
            f'{r["peak"] / 2**20:.1f}', f'{r["peak"] / base["peak"]:.2f}x',
            f'{r["diff"]:.1e}', ', '.join(r['dtypes'])]


def compile_setting(text: str) -> Tuple[str, dict]:
    """A --compile-losses value (default, reduce-overhead, backend=NAME) ->
    (row label, I2CKDDistill options)."""
    if text == 'default':
        return 'compiled', dict(compile_losses=True)
    if text == 'reduce-overhead':
        return f'compiled ({text})', dict(compile_losses=dict(mode=text))
    if text.startswith('backend=') and text[len('backend='):]:
        return f'compiled ({text})', dict(compile_losses=dict(
            backend=text[len('backend='):]))
    raise argparse.ArgumentTypeError(
        f'{text!r}: default, reduce-overhead or backend=NAME')


def main(argv: Optional[List[str]] = None) -> str:
    """Run the benchmark, print the markdown report and return it."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    harness.add_common_args(p, device='cpu')
    p.set_defaults(baseline=BASELINE_REV)
    p.add_argument('--big-runs', type=int, default=3,
                   help='timed 512x1024 steps per variant')
    p.add_argument('--big-batch', type=int, default=2)
    p.add_argument('--no-big', action='store_true',
                   help='skip the 512x1024 R101 -> R18 step')
    p.add_argument('--big-warmup', type=int, default=0)
    p.add_argument('--big-extras', action='store_true',
                   help='512x1024 too: split check and plain train_step')
    p.add_argument('--big-size', type=harness.hw, default=(512, 1024))
    p.add_argument('--big-cwd', action='store_true',
                   help='Cityscapes step too: CWD alone')
    p.add_argument('--big-before', action='store_true',
                   help='512x1024 too: the "loss before" row')
    p.add_argument('--compile-losses', nargs='+', metavar='MODE',
                   type=compile_setting, default=[],
                   help='default, reduce-overhead or backend=NAME')
    p.add_argument('--no-toy', action='store_true')
    p.add_argument('--step-teachers', nargs='*', type=teacher_setting,
                   default=[teacher_setting('bf16')],
                   help='fp32, bf16 or fp16, +cl for channels_last')
    p.add_argument('--teachers', nargs='+', type=teacher_setting,
                   default=[teacher_setting(t) for t in (
                       'fp32', 'bf16', 'fp32+cl', 'bf16+cl')],
                   help='of the teacher-forward table, the first the '
                   'reference')
    p.add_argument('--teacher-sizes', nargs='+', type=harness.hw)
    p.add_argument('--teacher-batch', type=int, default=2)
    p.add_argument('--teacher-runs', type=int)
    p.add_argument('--note', action='append', default=[],
                   help='a line added to the report\'s header')
    args = harness.parse(p, argv)
    device = torch.device(args.device)
    kind = harness.clock_kind(args, device)
    clock = harness.clock(kind, device)
    quick = args.quick
    runs = args.runs or (3 if quick else 15)
    warmup = args.warmup if args.warmup is not None else 1 + 2 * (not quick)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    toy = toy_configs('toyshapes')
    baseline = (None if args.baseline == 'none' else
                harness.load_baseline(args.baseline))

    def variants_of(name, cfg, cwd_only=False, before=True):
        """The loss before (with a baseline, I2CKD configs), the current
        loss, each --step-teachers setting, each compiled mode."""
        spec = dict(cfg=cfg, cwd_only=cwd_only)
        out = {}
        if before and baseline is not None and not cwd_only:
            out[f'{name}, loss before ({args.baseline})'] = dict(
                spec, before=True)
        out[name] = spec
        for t in args.step_teachers:
            out[f'{name}, {teacher_label(t)}'] = dict(spec, options=t)
        for label, options in ([] if cwd_only else args.compile_losses):
            out[f'{name}, {label}'] = dict(spec, options=options)
            for t in args.step_teachers:
                out[f'{name}, {label}, {teacher_label(t)}'] = dict(
                    spec, options=dict(t, **options))
        return out

    settings = []
    if not args.no_toy:
        variants = {'student alone': dict(cfg=toy['student'])}
        if not quick:
            variants.update(variants_of('CWD', toy['i2ckd_cwd'], True))
        variants.update(variants_of('I2CKD', toy['i2ckd']))
        if not quick:
            variants.update(variants_of('I2CKD + CWD', toy['i2ckd_cwd']))
        settings.append(dict(  # block: side of the squares of one class
            name='ToyShapes 64x64, batch 8', variants=variants, size=(64, 64),
            batch=8, block=8, runs=runs, warmup=warmup, extras=True))
    if not (quick or args.no_big):
        variants = {'student alone': dict(cfg=CITYSCAPES, student_only=True)}
        variants.update(variants_of('I2CKD', CITYSCAPES,
                                    before=args.big_before))
        if args.big_cwd:
            variants.update(variants_of('CWD', CITYSCAPES_CWD, True))
        bh, bw = args.big_size
        settings.append(dict(
            name=f'Cityscapes R101 -> R18, {bh}x{bw}, batch {args.big_batch}',
            variants=variants, size=(bh, bw), batch=args.big_batch,
            block=32, runs=args.big_runs, warmup=args.big_warmup,
            extras=args.big_extras))
    teacher_cfg, teacher_name, teacher_sizes = (
        (toy['i2ckd'], 'ToyShapes R18 1/2 width', [(64, 64), (128, 128)])
        if quick else (CITYSCAPES, 'Cityscapes DeepLabV3 R101',
                       [(64, 128), (128, 256), (256, 512)]))
    teacher_sizes = args.teacher_sizes or teacher_sizes
    teacher_runs = args.teacher_runs or (3 if quick else 5)

    t_start = time.time()
    with set_torch_threads(args.threads):
        lines = harness.header(
            'What distillation costs: one training step, by part',
            'bench_distill_step.py', argv, args.note) + [
            f'- device: {args.device}; {kind} time ('
            + ('process CPU time' if kind == 'cpu' else 'synchronised wall '
               'clock') + ') in ms, medians of the runs of each row, the '
            'variants of a setting interleaved in rotating order; warm-up '
            f'steps: toy {warmup}, 512x1024 {args.big_warmup}; random '
            'weights, images and blocky labels; the configs\' optimizers',
            '- parts, `split check` (max relative gradient difference of the '
            'two-phase backward vs one `backward()`), `parts/total` and '
            '`plain train_step` (uninstrumented, interleaved): '
            'benchmarks/README.md',
            f'- variants: `loss before ({args.baseline})` = the I2CKD loss of '
            'that revision in place of the current one; `<p> teacher` = '
            '`I2CKDDistill(teacher_precision=<p>)`; `CWD` = the I2CKD + CWD '
            'config without its I2CKD loss; `compiled` = '
            '`I2CKDDistill(compile_losses=...)`, compiled in the warm-up', '']
        lines += md_table(STEP_COLS, [], 'll' + 'r' * 12)
        censuses = {}
        for st in settings:
            name, (h, w) = st['name'], st['size']
            log(f'[{args.device}] {name}: building ...')
            variants, classes = {}, set()
            for vname, spec in st['variants'].items():
                model, optim, k = build_model(
                    spec['cfg'], (h, w), device,
                    spec.get('student_only', False), spec.get('options'),
                    spec.get('cwd_only', False))
                if spec.get('before'):
                    use_baseline_loss(model, baseline, spec['cfg'])
                variants[vname] = (model, optim)
                classes.add(k)
            if len(classes) != 1:
                raise ValueError(f'{name}: class counts differ: {classes}')
            data = make_batch(h, w, st['batch'], classes.pop(), st['block'])
            check = {vname: split_check(model, optim, data, clock)
                     for vname, (model, optim) in variants.items()
                     if st['extras'] and hasattr(model, 'distiller')}
            log(f'[{args.device}] {name}: split check {check}; '
                f'{st["runs"]} runs')
            res = bench_setting(variants, data, st['runs'], st['warmup'],
                                st['extras'], clock, log)
            lines += md_table(STEP_COLS, [
                step_row(name, v, m, res['student alone']['total'],
                         check.get(v)) for v, m in res.items()])[2:]
            if args.out:  # the table survives a run cut short after it
                with open(args.out, 'w') as f:
                    f.write('\n'.join(lines + ['', '(the run was still '
                                               'going)', '']))
            if st['extras']:  # one more step per variant, profiled
                censuses[name] = {}
                for vname, (model, optim) in variants.items():
                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        instrumented_step(model, optim, data, clock)
                    censuses[name][vname] = harness.count_by_part(
                        prof.events())
            del variants
        lines += ['']
        if censuses:
            lines += [
                '## Operators and host waits of one step', '',
                'One more step per variant under `torch.profiler`: `ops` = '
                'top-level ATen operators of a part, forward + backward '
                '(MMRazor\'s CWD forward+backward is 27); the distill '
                'losses\' part includes the connector. `host waits` = '
                'operators that make the host wait for a GPU ('
                + ', '.join(f'`{o[6:]}`' for o in harness.HOST_WAIT_OPS) +
                ') in the distill losses and in the rest of the step (in '
                'brackets the optimizer\'s: AdamW reads its step count once '
                'per parameter). Counts do not depend on the device.', '']
            lines += md_table(CENSUS_COLS, [
                census_row(name, v, c) for name, census in censuses.items()
                for v, c in census.items()], 'll' + 'r' * 5) + ['']
        lines += [
            '## The teacher\'s forward alone', '',
            '`alg.teacher_forward` (no_grad, recorders, autocast and the '
            'float32 cast of its records) per teacher setting, the same '
            f'weights; median of {teacher_runs} runs after one warm-up, '
            'interleaved; peak tensor memory of one call above the memory '
            'before; feature Δ = max |record - first setting\'s record| / '
            'max |first\'s record|.' + (
                ' fp16 on a CPU: 1 run (~75x the fp32 time).' if any(
                    t['teacher_precision'] == 'fp16' for t in args.teachers)
                else ''), '']
        rows = []
        for (h, w) in teacher_sizes:
            log(f'[{args.device}] teacher forward {teacher_name} {h}x{w}')
            got = bench_teacher(teacher_cfg, (h, w), args.teacher_batch,
                                args.teachers, teacher_runs, device, clock)
            rows += [teacher_row(teacher_name, r, got[0]) for r in got]
        lines += md_table(TEACHER_COLS, rows, 'llrrrrrrl')
    return harness.finish_report(lines + [''], t_start, args.out)


if __name__ == '__main__':
    main()

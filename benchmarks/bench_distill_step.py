"""What distillation costs: a student-alone step vs an I2CKD step, by part.

Method, options and commands: benchmarks/README.md.
"""
import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional, Tuple
from unittest import mock

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
    'beyond student alone + teacher fwd ms (share)',
    '(a) teacher fwd ms (share)', '(b) student fwd+bwd ms (share): fwd + bwd',
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
def part_timer(part: str, parts: Dict[str, float], clock):
    """Add the block's time to ``parts[part]``; the block is also a
    ``record_function('part::<part>')`` range for the operator census."""
    with torch.profiler.record_function(f'part::{part}'):
        t0 = clock()
        yield
        parts[part] += clock() - t0


@contextlib.contextmanager
def forward_timers(alg, clock, parts: Dict[str, float]):
    """Time the teacher's, the student's and the distill losses' forward
    calls of ``alg`` in the block into ``parts``."""
    def timed(part, fn, before=None):
        def run(*args, **kwargs):
            if before:
                before(alg)
            with part_timer(part, parts, clock):
                return fn(*args, **kwargs)
        return run

    # instance attributes win over the class methods; the student's forward
    # is done when the losses run: they read aliases of its records
    patched = [(alg, 'teacher_forward', 'teacher', None),
               (alg.student, 'forward', 'student_fwd', None),
               (alg.distiller, 'compute_distill_losses', 'distill_fwd',
                alias_student_records)]
    with contextlib.ExitStack() as stack:
        for obj, attr, part, before in patched:
            stack.enter_context(mock.patch.object(
                obj, attr, timed(part, getattr(obj, attr), before)))
        yield


def _walk(x, fn):
    """``fn`` applied to every tensor of a nested record (lists, tuples,
    dicts; the same nesting back). torch's pytree would do, but is private."""
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
        recorder.data_buffer[:] = _walk(
            recorder.data_buffer,
            lambda t: t.view_as(t) if t.requires_grad else t)


def recorded_student_tensors(alg) -> List[torch.Tensor]:
    """The recorded student tensors that carry a gradient, each once."""
    found = {}  # by id: the records keep the tensors (and so their ids) alive

    def keep(t):
        if t.requires_grad:
            found.setdefault(id(t), t)

    for recorder in alg.distiller.student_recorders.recorders.values():
        _walk(recorder.data_buffer, keep)
    return list(found.values())


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
    with part_timer('distill_bwd', parts, clock):
        grads = torch.autograd.grad(distill_total, recorded + params,
                                    allow_unused=True)
        for p, g in zip(params, grads[len(recorded):]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    used = [(t, g) for t, g in zip(recorded, grads) if g is not None]
    with part_timer('student_bwd', parts, clock):
        torch.autograd.backward(
            [student_total] + [t for t, _ in used],
            [torch.ones_like(student_total)] + [g for _, g in used])


def instrumented_step(model, optim, data: dict, clock,
                      update: bool = True) -> Dict[str, float]:
    """One training step timed by part: seconds per part and ``total``;
    ``update=False`` keeps the gradients, skips the optimizer."""
    parts = defaultdict(float)
    t_start = clock()
    with part_timer('pre', parts, clock):
        batch = model.data_preprocessor(data, True)
    if hasattr(model, 'distiller'):
        with forward_timers(model, clock, parts):
            losses = model(**batch, mode='loss')
        split_backward(model, losses, clock, parts)
    else:
        with part_timer('student_fwd', parts, clock):
            total = model.parse_losses(model(**batch, mode='loss'))[0]
        with part_timer('student_bwd', parts, clock):
            total.backward()
    if update:
        with part_timer('optim', parts, clock):
            optim.step()
            optim.zero_grad()
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


def bench_setting(setting: str, variants: Dict[str, tuple], data: dict,
                  runs: int, warmup: int, extras: bool, clock,
                  log) -> Tuple[List[list], List[list]]:
    """Rows of the step table and of the census for one setting: each
    variant (label -> (model, optim); the student alone first) timed by
    part, interleaved; with ``extras`` its split check, its uninstrumented
    train_step (interleaved too) and one more step under the profiler."""
    def plain_step(model, optim):
        model.train_step(data, optim)  # its dict is no parts: not returned

    check = {label: split_check(model, optim, data, clock)
             for label, (model, optim) in variants.items()
             if extras and hasattr(model, 'distiller')}
    log(f'{setting}: split check {check}; {runs} runs')
    cases = {}
    for name, (model, optim) in variants.items():
        cases[name] = functools.partial(instrumented_step, model, optim,
                                        data, clock)
        if extras:
            cases[f'{name} (plain)'] = functools.partial(plain_step, model,
                                                         optim)
    got = rounds(
        cases, runs, {n: 0 if n.endswith('(plain)') else warmup
                      for n in cases}, clock,
        lambda r, out: log(f'  run {r + 1}/{runs}: ' + ', '.join(
            f'{n} {out[n][-1]["total"]:.3f} s' for n in variants)))
    rows, census, base = [], [], None
    for name, (model, optim) in variants.items():
        # the student alone's median step first
        base = base or statistics.median(x['total'] for x in got[name])
        rows.append(step_row(setting, name, got[name],
                             got.get(f'{name} (plain)'), base,
                             check.get(name)))
        if extras:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                instrumented_step(model, optim, data, clock)
            census.append(census_row(setting, name,
                                     harness.count_by_part(prof.events())))
    return rows, census


# ----------------------------------------------- teacher and compiled modes
def teacher_setting(text: str) -> Tuple[str, dict]:
    """A teacher setting (fp32, bf16 or fp16; ``+cl``: channels_last) ->
    (row label, I2CKDDistill options)."""
    precision = text.removesuffix('+cl')
    if precision not in TEACHER_PRECISIONS:
        raise argparse.ArgumentTypeError(
            f'{text!r}: a teacher setting is one of '
            f'{", ".join(TEACHER_PRECISIONS)}, optionally with +cl '
            '(channels_last)')
    cl = precision != text
    return (f'{precision}{" channels_last" * cl} teacher',
            dict(teacher_precision=precision, teacher_channels_last=cl))


def compile_setting(text: str) -> Tuple[str, dict]:
    """A --compile-losses value (default, reduce-overhead, backend=NAME) ->
    (row label, I2CKDDistill options)."""
    backend = text.removeprefix('backend=')
    if text == 'default':
        return 'compiled', dict(compile_losses=True)
    if text == 'reduce-overhead':
        return f'compiled ({text})', dict(compile_losses=dict(mode=text))
    if backend and backend != text:
        return f'compiled ({text})', dict(compile_losses=dict(
            backend=backend))
    raise argparse.ArgumentTypeError(
        f'{text!r}: default, reduce-overhead or backend=NAME')


def teacher_rows(name: str, cfg_path: str, size: Tuple[int, int],
                 batch: int, settings: List[tuple], runs: int,
                 device: torch.device, clock) -> List[list]:
    """Rows of the teacher table: ``alg.teacher_forward`` alone per
    (label, options) setting, the same weights."""
    models = {}
    for label, options in settings:
        torch.manual_seed(0)  # the same teacher weights for every setting
        alg, _, k = build_model(cfg_path, size, device, options=options)
        models[label] = alg.eval()
    first = next(iter(models.values()))
    data = first.data_preprocessor(make_batch(*size, batch, k, 32), True)

    def forward(alg):
        def run():
            with torch.no_grad():
                alg.teacher_forward(data['inputs'], data['data_samples'])
        return run

    # the CPU's fp16 kernels take ~75x fp32: one run
    times = rounds({t: forward(m) for t, m in models.items()}, {
        t: 1 if device.type == 'cpu' and t.startswith('fp16') else runs
        for t in models}, 1, clock)
    records = {t: [x for r in m.distiller.teacher_recorders.recorders.values()
                   for x in r.data_buffer
                   if isinstance(x, torch.Tensor) and x.is_floating_point()]
               for t, m in models.items()}
    ref = next(iter(records.values()))
    scale = max(float(x.abs().max()) for x in ref)
    rows, base = [], None
    for t, alg in models.items():
        ms = statistics.median(times[t]) * 1e3
        peak = harness.peak_memory(forward(alg), device)
        base = base or (ms, peak)  # the first setting's
        diff = max(float((x.float() - y.float()).abs().max())
                   for x, y in zip(records[t], ref)) / scale
        rows.append([
            f'{name}, {size[0]}x{size[1]}, batch {batch}', t, len(times[t]),
            f'{ms:.1f}', f'{ms / base[0]:.2f}x', f'{peak / 2**20:.1f}',
            f'{peak / base[1]:.2f}x', f'{diff:.1e}',
            ', '.join(sorted({str(x.dtype)[6:] for x in records[t]}))])
    return rows


# ------------------------------------------------------------------ report
def _ms(x: float) -> str:
    return f'{x * 1e3:.1f}'


def step_row(setting: str, name: str, runs: List[dict],
             plain: Optional[list], base: float,
             check: Optional[float]) -> list:
    """One row of the step table from the parts of each run (``plain``: the
    uninstrumented steps' times; ``base``: the student alone's step)."""
    m = {p: statistics.median(x.get(p, 0.0) for x in runs)
         for p in PARTS + ('total', )}
    coverage = statistics.median(
        sum(x.get(p, 0.0) for p in PARTS) / x['total'] for x in runs)
    totals = [x['total'] for x in runs]
    distill = name != 'student alone'
    t = m['total']
    beyond = t - base - m['teacher']
    student = m['student_fwd'] + m['student_bwd']
    dist = m['distill_fwd'] + m['distill_bwd']
    return [
        setting, name, len(runs),
        f'{_ms(t)} ({_ms(min(totals))}-{_ms(max(totals))})',
        _ms(statistics.median(plain)) if plain else '-',
        f'{t / base:.2f}x',
        f'{_ms(beyond)} ({beyond / t:+.1%})' if distill else '-',
        f'{_ms(m["teacher"])} ({m["teacher"] / t:.0%})' if distill else '-',
        f'{_ms(student)} ({student / t:.0%}): '
        f'{_ms(m["student_fwd"])} + {_ms(m["student_bwd"])}',
        f'{_ms(dist)} ({dist / t:.0%}): {_ms(m["distill_fwd"])} + '
        f'{_ms(m["distill_bwd"])}' if distill else '-',
        _ms(m['optim']), _ms(m['pre']), f'{coverage:.3f}',
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


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """The command line (benchmarks/README.md)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    harness.add_common_args(p, device='cpu')
    p.set_defaults(baseline=BASELINE_REV)
    for flag, text in (
            ('--no-toy', 'skip the ToyShapes 64x64 step'),
            ('--no-big', 'skip the 512x1024 R101 -> R18 step'),
            ('--big-extras', '512x1024 too: split check, plain train_step'),
            ('--big-before', '512x1024 too: the "loss before" row'),
            ('--big-cwd', '512x1024 too: CWD alone')):
        p.add_argument(flag, action='store_true', help=text)
    for flag, default in (('--big-batch', 2), ('--big-runs', 3),
                          ('--big-warmup', 0), ('--teacher-batch', 2),
                          ('--teacher-runs', None)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument('--big-size', type=harness.hw, default=(512, 1024))
    p.add_argument('--step-teachers', nargs='*', type=teacher_setting,
                   default=[teacher_setting('bf16')],
                   help='fp32, bf16 or fp16, +cl for channels_last')
    p.add_argument('--compile-losses', nargs='+', metavar='MODE',
                   type=compile_setting, default=[],
                   help='default, reduce-overhead or backend=NAME')
    p.add_argument('--teachers', nargs='+', type=teacher_setting,
                   default=[teacher_setting(t) for t in (
                       'fp32', 'bf16', 'fp32+cl', 'bf16+cl')],
                   help='of the teacher table, the first the reference')
    p.add_argument('--teacher-sizes', nargs='+', type=harness.hw)
    p.add_argument('--note', action='append', default=[],
                   help="a line added to the report's header")
    return harness.parse(p, argv)


def step_settings(args, device, runs: int, warmup: int, log):
    """Each setting of the step table, its models built when its turn comes:
    (name, variants: row label -> (model, optim), data, runs, warm-up,
    extras: split check, plain train_step, census)."""
    baseline = (None if args.baseline == 'none' else
                harness.load_baseline(args.baseline))

    def variants_of(name, cfg, cwd_only=False, before=True):
        # (label, config, build_model options, loss before): the loss
        # before, then each compiled mode (first: none) with each
        # --step-teachers setting (first: the config's teacher)
        out = []
        if before and baseline is not None and not cwd_only:
            out.append((f'{name}, loss before ({args.baseline})', cfg,
                        dict(cwd_only=cwd_only), True))
        compiled = [] if cwd_only else args.compile_losses
        for c_label, c_options in [('', {})] + compiled:
            for t_label, t_options in [('', {})] + args.step_teachers:
                out.append((', '.join(filter(None, (name, c_label, t_label))),
                            cfg, dict(cwd_only=cwd_only, options=dict(
                                t_options, **c_options)), False))
        return out

    def build(name, size, variants):
        log(f'[{args.device}] {name}: building ...')
        models, classes = {}, set()
        for label, cfg, options, before in variants:
            model, optim, k = build_model(cfg, size, device, **options)
            if before:
                use_baseline_loss(model, baseline, cfg)
            models[label] = (model, optim)
            classes.add(k)
        if len(classes) != 1:
            raise ValueError(f'{name}: class counts differ: {classes}')
        return models, classes.pop()

    if not args.no_toy:
        toy = toy_configs('toyshapes')
        variants = [('student alone', toy['student'], {}, False)]
        for name, key, cwd_only in (('CWD', 'i2ckd_cwd', True),
                                    ('I2CKD', 'i2ckd', False),
                                    ('I2CKD + CWD', 'i2ckd_cwd', False)):
            if name == 'I2CKD' or not args.quick:
                variants += variants_of(name, toy[key], cwd_only)
        name = 'ToyShapes 64x64, batch 8'
        models, k = build(name, (64, 64), variants)
        # block: side of the squares of one class
        yield (name, models, make_batch(64, 64, 8, k, 8), runs, warmup, True)
        del models  # with main's reference: freed before the next build
    if not (args.quick or args.no_big):
        variants = [('student alone', CITYSCAPES, dict(student_only=True),
                     False)]
        variants += variants_of('I2CKD', CITYSCAPES, before=args.big_before)
        if args.big_cwd:
            variants += variants_of('CWD', CITYSCAPES_CWD, True)
        (h, w), n = args.big_size, args.big_batch
        name = f'Cityscapes R101 -> R18, {h}x{w}, batch {n}'
        models, k = build(name, (h, w), variants)
        yield (name, models, make_batch(h, w, n, k, 32), args.big_runs,
               args.big_warmup, args.big_extras)


def main(argv: Optional[List[str]] = None) -> str:
    """Run the benchmark, print the markdown report and return it."""
    args = parse_args(argv)
    device = torch.device(args.device)
    kind = harness.clock_kind(args, device)
    clock = harness.clock(kind, device)
    quick = args.quick
    runs = args.runs or (3 if quick else 15)
    warmup = args.warmup if args.warmup is not None else 1 + 2 * (not quick)
    log = functools.partial(print, file=sys.stderr, flush=True)
    teacher_cfg, teacher_name, teacher_sizes = (
        (toy_configs('toyshapes')['i2ckd'], 'ToyShapes R18 1/2 width',
         [(64, 64), (128, 128)]) if quick else
        (CITYSCAPES, 'Cityscapes DeepLabV3 R101',
         [(64, 128), (128, 256), (256, 512)]))

    t_start = time.time()
    with set_torch_threads(args.threads):
        lines = harness.header(
            'What distillation costs: one training step, by part',
            'bench_distill_step.py', argv, args.note) + [
            f'- device: {args.device}; {kind} time in ms, the variants of a '
            f'setting interleaved; warm-up steps: toy {warmup}, 512x1024 '
            f'{args.big_warmup}; the rows, parts and columns of the tables: '
            'benchmarks/README.md', '']
        lines += md_table(STEP_COLS, [], 'll' + 'r' * 12)
        census = []
        for name, variants, data, n, warm, extras in step_settings(
                args, device, runs, warmup, log):
            rows, census_rows = bench_setting(name, variants, data, n, warm,
                                              extras, clock, log)
            lines += md_table(STEP_COLS, rows)[2:]
            census += census_rows
            if args.out:  # the tables survive a run cut short after them
                with open(args.out, 'w') as f:
                    f.write('\n'.join(lines + ['', '(the run was still '
                                               'going)', '']))
            del variants
        lines += ['']
        if census:
            lines += ['## Operators and host waits of one step', '',
                      'Host-wait operators: ' + ', '.join(
                          f'`{o[6:]}`' for o in harness.HOST_WAIT_OPS) + '.',
                      ''] + md_table(CENSUS_COLS, census, 'll' + 'r' * 5)
            lines += ['']
        rows = []
        for size in args.teacher_sizes or teacher_sizes:
            log(f'[{args.device}] teacher forward {teacher_name} {size}')
            rows += teacher_rows(
                teacher_name, teacher_cfg, size, args.teacher_batch,
                args.teachers, args.teacher_runs or (3 if quick else 5),
                device, clock)
        lines += ["## The teacher's forward alone", ''] + md_table(
            TEACHER_COLS, rows, 'llrrrrrrl')
    return harness.finish_report(lines + [''], t_start, args.out)


if __name__ == '__main__':
    main()

"""Speed and memory of the I2CKD loss (prototypes + triplets), fwd+bwd.

Method and commands: benchmarks/README.md. ``--quick`` is a < 1 min run.
"""
import argparse
import functools
import itertools
import statistics
import sys
import time
from typing import Callable, List, Optional

import torch
from torch.utils.benchmark import set_torch_threads

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import harness
from harness import IGNORE, md_table, op_counts, peak_memory, rounds
from i2ckd_mm.models.losses import I2CKDLoss
from mmrazor.models.losses import ChannelWiseDivergence
from toy import reference_i2ckd

#: --variant: the loss options timed
VARIANTS = {'shipped': dict(normalize=True, margin=0.2, pull_weight=1.0),
            'literal': dict()}
#: --compile-mode -> the row's key of the compiled loss
COMPILED = {'default': 'compiled', 'reduce-overhead': 'compiled_ro'}
#: the row of the target line: (classes, channels, h, w, batch)
TARGET = (19, 256, 64, 128, 2)
#: report labels, the losses' column groups in this order
NAMES = dict(i2ckd='I2CKD', before='before', cwd='CWD', compiled='compiled',
             compiled_ro='compiled (reduce-overhead)')


def make_inputs(k: int, c: int, h: int, w: int, n: int, device):
    """Features (N, C, h, w), the student's requiring grad, and labels
    (N, 8h, 8w) uniform per pixel with 5 % ignored: every class in every
    image, the worst case for the K x K triplets."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(n, c, h, w, generator=g).to(device).requires_grad_()
    t = torch.randn(n, c, h, w, generator=g).to(device)
    gt = torch.randint(0, k, (n, 8 * h, 8 * w), generator=g)
    gt[torch.rand(gt.shape, generator=g) < 0.05] = IGNORE
    return s, t, gt.to(device)


def no_wait(loss, **compile_kwargs) -> Callable:
    """The loss as timed: its ``compute`` (no wait inside; the status is
    dropped, the eager loss checks the inputs), compiled if kwargs given."""
    if not hasattr(loss, 'compute'):  # an earlier loss: its forward
        return loss
    fn = loss.compute
    if compile_kwargs:
        fn = torch.compile(fn, **compile_kwargs)
    return lambda *inputs: fn(*inputs)[0]


def fwd_bwd(loss_fn: Callable, s: torch.Tensor, *args) -> Callable[[], None]:
    """One forward+backward of ``loss_fn(s, *args)``, as a case to time."""
    def run():
        s.grad = None
        loss_fn(s, *args).backward()
    return run


def bench_loss_case(k, c, h, w, n, device, args, with_naive: bool,
                    baseline=None) -> dict:
    """One row: ms, MiB, operators and host waits of every implementation,
    each loss's value checked against ``I2CKDLoss`` first."""
    s, t, gt = make_inputs(k, c, h, w, n, device)
    options = VARIANTS[args.variant]
    row = dict(k=k, c=c, h=h, w=w, n=n, device=device.type)
    i2ckd = I2CKDLoss(num_classes=k, **options).to(device)
    with torch.no_grad():  # forward raises what it finds in the inputs
        want = i2ckd(s, t, gt).item()

    def agree(what: str, loss_fn, tol: float, autograd=False) -> float:
        """|loss_fn - I2CKDLoss|, raised above ``tol``."""
        with torch.set_grad_enabled(autograd):
            got = loss_fn(s, t, gt).item()
        where = f'{what} disagree at K={k} C={c} {h}x{w} N={n}'
        torch.testing.assert_close(got, want, rtol=tol, atol=tol,
                                   msg=lambda m: f'{where}: {m}')
        return abs(got - want)

    calls = {'i2ckd': no_wait(i2ckd)}
    if baseline is not None:
        calls['before'] = no_wait(baseline(num_classes=k, **options).to(
            device))
        agree('baseline and I2CKDLoss', calls['before'], 1e-5)
    if args.compile:
        # a new loss per row: without a reset dynamo counts every row's
        # trace as a recompile of the same code (and fails at 8)
        torch.compiler.reset()
        wall = harness.clock('wall', device)
        for mode in args.compile_mode or ['default']:
            key = COMPILED[mode]
            calls[key] = no_wait(
                I2CKDLoss(num_classes=k, **options).to(device),
                backend=args.compile, fullgraph=True, dynamic=False,
                mode=None if mode == 'default' else mode)
            first = rounds({key: fwd_bwd(calls[key], s, t, gt)}, 1, 0, wall)
            row[f'{key}_compile_s'] = first[key][0]  # compiles fwd and bwd
            agree('compiled and eager I2CKDLoss', calls[key], 1e-5,
                  autograd=True)  # the graph it was compiled for
    if with_naive:
        calls['naive'] = functools.partial(reference_i2ckd.loss,
                                           num_classes=k, **options)
        row['naive_diff'] = agree('naive loop and I2CKDLoss', calls['naive'],
                                  1e-4)
    fns = {key: fwd_bwd(call, s, t, gt) for key, call in calls.items()}
    fns['cwd'] = fwd_bwd(ChannelWiseDivergence(tau=1.0).to(device), s, t)
    fns['floor'] = functools.partial(torch.add, s.detach(), t)
    runs = {key: args.runs for key in fns}
    warm = {key: args.warmup for key in fns}
    if with_naive:  # the slow loop: its own runs, one warm-up at most
        runs['naive'], warm['naive'] = args.naive_runs, min(args.warmup, 1)
    times = rounds(fns, runs, warm, harness.clock(args.clock_kind, device))
    for key, fn in fns.items():
        row[f'{key}_ms'] = statistics.median(times[key]) * 1e3
        if key != 'floor':
            # every count from no gradient: freeing an earlier one inside
            # the call made the profiler credit it to some losses (-64 MiB)
            s.grad = None
            row[f'{key}_mib'] = peak_memory(fn, device) / 2**20
        if key not in ('floor', 'naive'):
            row[f'{key}_ops'], row[f'{key}_waits'] = op_counts(fn)
    return row


def bench_primitives(k: int, c: int, h: int, w: int, n: int, device,
                     args) -> List[str]:
    """The passes over the features any such loss must make, timed like the
    losses against the floor, and the lower bound they add up to."""
    g = torch.Generator().manual_seed(0)
    hw = h * w
    f, t = torch.randn(2, n, c, hw, generator=g).to(device)
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

    cases = {
        '`F_s + F_t` into a new tensor (the floor)': lambda: f + t,
        'class sums of one map by `scatter_add` (forward, K >= 16 on CPU)':
        lambda: f.new_zeros(n, c, k + 1).scatter_add_(2, index, f),
        'class sums of one map by one-hot `bmm` (forward, GPU and K < 16 on '
        'CPU)': lambda: torch.bmm(onehot, f.transpose(1, 2)),
        'the student gradient: `index_select` of the class gradients '
        '(backward)': backward_gather,
        'a pixel-major copy of one map (what a row-wise reduction would '
        'need first)': lambda: f.transpose(1, 2).contiguous(),
        'class sums by `scatter_add` over rows of the pixel-major copy (the '
        'copy not counted)': rows_scatter,
    }
    ms = [statistics.median(v) * 1e3 for v in rounds(
        cases, args.runs, args.warmup,
        harness.clock(args.clock_kind, device)).values()]
    sums, bound = min(ms[1], ms[2]), 2 * min(ms[1], ms[2]) + ms[3]
    return [f'### The loss\'s unavoidable passes on {device} ({k} classes, '
            f'{c} channels, {h}x{w}, batch {n})', ''] + md_table(
        ['primitive', 'ms (median)', '/ floor'],
        [(what, f'{v:.2f}', f'{v / ms[0]:.2f}x')
         for what, v in zip(cases, ms)], 'lrr') + [
        '', f'Lower bound from these primitives: class sums of the student '
        f'and of the teacher map (the faster of scatter/bmm, {sums:.2f} ms '
        f'each) and the gradient ({ms[3]:.2f} ms) = {bound:.2f} ms = '
        f'**{bound / ms[0]:.1f}x the floor**, before any other operation '
        'of the loss.', '']


def loss_table(rows: List[dict], device: str) -> List[str]:
    """The markdown table of the loss rows: per loss run (I2CKD, before,
    compiled) its ms, ratios to the floor and to CWD and peak MiB; then CWD,
    operators, host waits and the naive loop ('-' where it did not run)."""

    def cells(r: dict) -> dict:
        out = {'classes': r['k'], 'channels': r['c'],
               'feature h x w': f'{r["h"]}x{r["w"]}', 'batch': r['n'],
               'floor ms': f'{r["floor_ms"]:.2f}'}
        for key in (k for k in NAMES if k != 'cwd' and f'{k}_ms' in r):
            name, ms = NAMES[key], r[f'{key}_ms']
            out[f'{name} ms'] = f'{ms:.2f}'
            out[f'{name} / floor'] = f'{ms / r["floor_ms"]:.1f}x'
            out[f'{name} / CWD'] = f'{ms / r["cwd_ms"]:.2f}x'
            out[f'{name} MiB'] = f'{r[f"{key}_mib"]:.1f}'
            if f'{key}_compile_s' in r:
                out[f'{name} ops'] = r[f'{key}_ops']
                out[f'{name} compile s'] = f'{r[f"{key}_compile_s"]:.1f}'
        out['I2CKD / floor'] = f'**{out["I2CKD / floor"]}**'  # the goal
        out['CWD ms'] = f'{r["cwd_ms"]:.2f}'
        out['CWD MiB'] = f'{r["cwd_mib"]:.1f}'
        eager = [k for k in ('i2ckd', 'before', 'cwd') if f'{k}_ms' in r]
        out['ops: ' + ' / '.join(NAMES[key] for key in eager)] = ' / '.join(
            str(r[f'{key}_ops']) for key in eager)
        out['host waits: ' + ' / '.join(NAMES[key] for key in eager[:-1])] \
            = ' / '.join(str(r[f'{key}_waits']) for key in eager[:-1])
        if 'naive_ms' in r:  # the last columns ('-' in the other rows)
            out['naive loop ms'] = f'{r["naive_ms"]:.1f}'
            out['naive MiB'] = f'{r["naive_mib"]:.1f}'
            out['I2CKD speed-up vs naive'] = (
                f'{r["naive_ms"] / r["i2ckd_ms"]:.1f}x')
            out['naive value diff'] = f'{r["naive_diff"]:.1e}'
        return out

    table = [cells(r) for r in rows]
    head = list(dict.fromkeys(key for cell in table for key in cell))
    lines = [f'### Loss forward+backward on {device}', ''] + md_table(
        head, [[c.get(key, '-') for key in head] for c in table],
        'rrlr' + 'r' * len(head))
    for r in rows:  # the goal metric under the table
        if (r['k'], r['c'], r['h'], r['w'], r['n']) == TARGET:
            lines += ['', target_line(r)]
    return lines


def head_lines(args, argv, kinds) -> List[str]:
    """The report's title, machine and command lines and the settings of
    this run (the method: benchmarks/README.md)."""
    clocks = ', '.join(f'`{k}` on {d}' for d, k in kinds.items())
    notes = [
        'method: benchmarks/README.md, "The loss" (floor, ops, host waits, '
        'peak memory, inputs, checks)',
        f'timing: median of {args.runs} runs after {args.warmup} warm-up '
        f'runs (naive loop: {args.naive_runs} runs); clock: {clocks}',
        f'I2CKDLoss options: {args.variant} '
        f'{VARIANTS[args.variant] or "(defaults)"}']
    if args.baseline:
        notes.append(f'before: I2CKDLoss at {args.baseline}')
    if args.compile:
        modes = ', '.join(args.compile_mode or ['default'])
        notes.append(f'compiled: torch.compile(backend={args.compile!r}, '
                     f'fullgraph=True, dynamic=False), mode(s) {modes}')
    return harness.header('I2CKD loss: speed and memory',
                          'bench_i2ckd_loss.py', argv, notes) + ['']


def target_line(r: dict) -> str:
    """The goal metric at the :data:`TARGET` row: I2CKD / floor <= 3x."""
    ratio = r['i2ckd_ms'] / r['floor_ms']
    return ('**Target ({} classes, {} channels, {}x{}, batch {}, '.format(
        *TARGET) + f'{r["device"]})**: I2CKD {r["i2ckd_ms"]:.2f} ms = '
        f'**{ratio:.1f}x the floor** ({r["floor_ms"]:.2f} ms; goal <= 3x: '
        f'{"met" if ratio <= 3 else "NOT met"}).')


def main(argv: Optional[List[str]] = None) -> str:
    """Run the benchmark of ``argv`` (see ``--help``); return the report."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    harness.add_common_args(p, device='auto')
    p.add_argument('--naive-runs', type=int, default=3,
                   help='timed runs of the naive loop (0: none)')
    p.add_argument('--variant', choices=tuple(VARIANTS), default='shipped')
    p.add_argument('--compile', metavar='BACKEND',
                   help='also time the loss under torch.compile')
    p.add_argument('--compile-mode', nargs='+', choices=tuple(COMPILED))
    for option in ('--classes', '--channels', '--batches'):
        p.add_argument(option, type=int, nargs='+')
    p.add_argument('--sizes', nargs='+', metavar='HxW', type=harness.hw)
    p.add_argument('--primitives', action='store_true',
                   help='only the passes the loss cannot avoid, at the '
                   'first value of each size option')
    p.add_argument('--no-step', action='store_true',
                   help='no effect, kept for older commands: the loss\'s '
                   'share of a step is measured by bench_distill_step.py')
    args = harness.parse(p, argv)
    devices = ([args.device] if args.device != 'auto' else
               ['cpu'] + ['cuda'] * torch.cuda.is_available())
    quick = args.quick
    classes = args.classes or ((2, 19) if quick else (2, 19, 150))
    channels = args.channels or ((128, 256) if quick else (128, 256, 512))
    batches = args.batches or ((2, ) if quick else (2, 4))
    sizes = args.sizes or (((32, 64), (64, 128)) if quick else
                           ((64, 128), (128, 256)))
    args.naive_runs = 2 if quick else args.naive_runs
    args.runs = args.runs or (3 if quick else 7)
    args.warmup = args.warmup if args.warmup is not None else 1 + (not quick)
    baseline = harness.load_baseline(args.baseline) if args.baseline else None
    kinds = {d: harness.clock_kind(args, torch.device(d)) for d in devices}
    t_start = time.time()
    with set_torch_threads(args.threads):
        lines = head_lines(args, argv, kinds)
        for d in devices:
            args.clock_kind = kinds[d]
            if args.primitives:
                lines += bench_primitives(classes[0], channels[0], *sizes[0],
                                          batches[0], torch.device(d), args)
                continue
            rows = []
            for k, c, (h, w), n in itertools.product(classes, channels,
                                                     sizes, batches):
                # the naive loop keeps a full-size gradient per class and
                # image alive: > 20 GB at 150 classes and 512 channels
                with_naive = (args.naive_runs > 0 and n == batches[0]
                              and (h, w) == sizes[-1 if quick else 0]
                              and (k < 150 or c <= 128))
                rows.append(bench_loss_case(k, c, h, w, n, torch.device(d),
                                            args, with_naive, baseline))
                print(f'[{d}] K={k} C={c} {h}x{w} N={n}: I2CKD '
                      f'{rows[-1]["i2ckd_ms"]:.2f} ms', file=sys.stderr)
                if args.out:  # the rows so far survive a run cut short
                    with open(args.out, 'w') as f:
                        f.write('\n'.join(lines + loss_table(rows, d) + [
                            '', f'(rows so far: {len(rows)})', '']))
            lines += loss_table(rows, d) + ['']
    return harness.finish_report(lines, t_start, args.out)


if __name__ == '__main__':
    main()

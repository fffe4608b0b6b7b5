"""benchmarks/bench_i2ckd_loss.py --primitives: the lower bound it states
is computed from the rows of its own table."""
import argparse
import os.path as osp
import re

import pytest
import torch

import bench_i2ckd_loss as bench
from harness import load_baseline, op_counts

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_primitives_lower_bound_adds_up(tmp_path):
    out = tmp_path / 'prim.md'
    report = bench.main(['--primitives', '--device', 'cpu', '--classes', '3',
                         '--channels', '4', '--sizes', '4x8', '--batches',
                         '2', '--runs', '3', '--warmup', '1', '--out',
                         str(out)])
    assert out.read_text() == report
    rows = dict(re.findall(r'^\| (.+?) \| ([\d.]+) \| [\d.]+x \|$', report,
                           re.M))
    ms = {key: float(v) for key, v in rows.items()}
    assert len(ms) == 6
    scatter = next(v for key, v in ms.items() if 'scatter_add`' in key
                   and 'rows' not in key)
    bmm = next(v for key, v in ms.items() if '`bmm`' in key)
    gather = next(v for key, v in ms.items() if 'index_select' in key)
    bound = float(re.search(r'= ([\d.]+) ms = \*\*[\d.]+x', report)[1])
    # table values are rounded to 0.01 ms
    assert bound == pytest.approx(2 * min(scatter, bmm) + gather, abs=0.04)


def test_sizes_must_be_h_x_w():
    with pytest.raises(SystemExit):
        bench.main(['--primitives', '--sizes', '64by128'])


def _has_revision(rev):
    import subprocess
    return subprocess.run(['git', 'cat-file', '-e', f'{rev}^{{commit}}'],
                          cwd=ROOT, capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_revision('6829419'),
                    reason='a shallow clone without the before revision')
def test_loss_rows_count_operators_and_waits_before_and_after():
    """One row, before (the loss at 6829419) and after interleaved: the
    operator and host-wait columns are the counter's numbers for each."""
    report = bench.main(['--device', 'cpu', '--classes', '3', '--channels',
                         '4', '--sizes', '4x8', '--batches', '2', '--runs',
                         '1', '--warmup', '0', '--naive-runs', '1',
                         '--no-step', '--baseline', '6829419'])
    row = next(line for line in report.splitlines()
               if line.startswith('| 3 | 4 | 4x8 | 2 |'))
    ops, waits = re.search(r'\| (\d+ / \d+ / \d+) \| (\d+ / \d+) \|',
                           row).groups()
    after, before, cwd = map(int, ops.split(' / '))
    s, t, gt = bench.make_inputs(3, 4, 4, 8, 2, 'cpu')
    loss = bench.no_wait(
        bench.I2CKDLoss(num_classes=3, **bench.VARIANTS['shipped']))
    run = bench.fwd_bwd(loss, s, t, gt)
    run()
    # the loss as timed (compute: no wait inside); the earlier loss's
    # hand-written backward had fewer operators, not fewer waits
    assert (after, 0) == op_counts(run) and waits.startswith('0 / ')
    assert before != after and int(waits.split(' / ')[1]) >= 3
    assert cwd == op_counts(bench.fwd_bwd(
        bench.ChannelWiseDivergence(tau=1.0), s, t))[0]


@pytest.mark.skipif(not _has_revision('87f5c15'),
                    reason='a shallow clone without the before revision')
def test_every_loss_counts_its_new_student_gradient_in_its_memory():
    """Each loss's peak memory counts the student gradient it writes: 8 x
    256 x 64 x 128 float32 = 64 MiB. At this size a gradient left from the
    previous call, freed inside the counted call, took 64 MiB off the
    count of the loss at 87f5c15 (1.1 MiB)."""
    args = argparse.Namespace(variant='shipped', compile=None, runs=1,
                              warmup=0, naive_runs=0, clock_kind='cpu')
    row = bench.bench_loss_case(19, 256, 64, 128, 8, torch.device('cpu'),
                                args, False, load_baseline('87f5c15'))
    for key in ('i2ckd', 'before', 'cwd'):
        assert 64 <= row[f'{key}_mib'], (key, row[f'{key}_mib'])
    assert abs(row['i2ckd_mib'] - row['before_mib']) < 2


COMPILE_ARGS = ['--device', 'cpu', '--classes', '3', '--channels', '4',
                '--sizes', '4x8', '--batches', '2', '--runs', '3',
                '--warmup', '1', '--naive-runs', '1', '--no-step',
                '--compile', 'aot_eager']


def test_compiled_rows_are_checked_against_eager_and_compared_to_cwd():
    """--compile: the compiled loss's columns come from its own timings
    (compiled / CWD is the ratio of the row's two ms columns), and a
    compiled loss whose value differs from eager stops the benchmark."""
    report = bench.main(COMPILE_ARGS)
    header = next(line for line in report.splitlines()
                  if line.startswith('| classes'))
    row = next(line for line in report.splitlines()
               if line.startswith('| 3 | 4 | 4x8 | 2 |'))
    cells = dict(zip([c.strip() for c in header.strip('|').split('|')],
                     [c.strip() for c in row.strip('|').split('|')]))
    ratio = float(cells['compiled / CWD'].rstrip('x'))
    want = float(cells['compiled ms']) / float(cells['CWD ms'])
    assert ratio == pytest.approx(want, rel=0.05, abs=0.01)
    assert int(cells['compiled ops']) > 0


def test_compiled_loss_that_disagrees_with_eager_stops_the_benchmark(
        monkeypatch):
    def wrong_compile(fn, **kwargs):  # a different loss, "compiled"
        owner = getattr(fn, '__self__', fn)  # loss.compute or the module
        other = bench.I2CKDLoss(num_classes=owner.num_classes, margin=5.0)
        return other.compute if hasattr(other, 'compute') else other

    monkeypatch.setattr(bench.torch, 'compile', wrong_compile)
    with pytest.raises(AssertionError, match='compiled and eager'):
        bench.main(COMPILE_ARGS)


def test_two_compile_modes_give_two_column_groups():
    """--compile-mode default reduce-overhead: one column group per mode,
    each with its compile time (inductor on the CPU: reduce-overhead runs
    without CUDA graphs there)."""
    report = bench.main(COMPILE_ARGS[:-1] + ['inductor', '--compile-mode',
                                             'default', 'reduce-overhead'])
    header = next(line for line in report.splitlines()
                  if line.startswith('| classes'))
    row = next(line for line in report.splitlines()
               if line.startswith('| 3 | 4 | 4x8 | 2 |'))
    cells = dict(zip([c.strip() for c in header.strip('|').split('|')],
                     [c.strip() for c in row.strip('|').split('|')]))
    for label in ('compiled', 'compiled (reduce-overhead)'):
        assert float(cells[f'{label} compile s']) > 0
        # the ms columns are rounded to 0.01 ms, the ratio to 0.1
        ratio = float(cells[f'{label} / floor'].rstrip('x'))
        ms, floor = float(cells[f'{label} ms']), float(cells['floor ms'])
        assert (ms - 0.005) / (floor + 0.005) - 0.05 <= ratio <= \
            (ms + 0.005) / max(floor - 0.005, 1e-9) + 0.05


def test_loss_table_ratios_naive_columns_and_target_line():
    """Hand-made rows: the ratios are the rows' ms over the floor's and
    CWD's, the naive columns read '-' where it did not run, and the row at
    the target size gets the goal line (I2CKD / floor against 3x)."""
    row = dict(k=19, c=256, h=64, w=128, n=2, device='cpu', floor_ms=2.0,
               i2ckd_ms=5.0, i2ckd_mib=16.0, i2ckd_ops=121, i2ckd_waits=0,
               cwd_ms=10.0, cwd_mib=64.0, cwd_ops=27, cwd_waits=0)
    other = dict(row, k=2, naive_ms=100.0, naive_mib=20.0, naive_diff=2e-7)
    lines = bench.loss_table([row, other], 'cpu')
    head = [c.strip() for c in lines[2].strip('|').split('|')]
    cells = [dict(zip(head, (c.strip() for c in line.strip('|').split('|'))))
             for line in lines[4:6]]
    assert cells[0]['I2CKD / floor'] == '**2.5x**'
    assert cells[0]['I2CKD / CWD'] == '0.50x'
    assert cells[0]['ops: I2CKD / CWD'] == '121 / 27'
    assert cells[0]['naive loop ms'] == '-'
    assert cells[1]['I2CKD speed-up vs naive'] == '20.0x'
    assert cells[1]['naive value diff'] == '2.0e-07'
    assert lines[-1].startswith('**Target (19 classes, 256 channels, 64x128, '
                                'batch 2, cpu)**: I2CKD 5.00 ms = **2.5x the '
                                'floor** (2.00 ms; goal <= 3x: met)')

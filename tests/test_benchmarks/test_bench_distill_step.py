"""Smoke test of benchmarks/bench_distill_step.py on the toy configs.

Runs the script's ``main(['--quick'])`` once (ToyShapes 64x64, batch 8,
student alone, I2CKD with the loss of the baseline revision, I2CKD, I2CKD
with a bf16 teacher, 3 runs each) and checks the tables it prints: the
rows, every part measured, the parts adding up to the measured step, the
two-phase backward giving the gradients of a plain backward, the operator
and host-wait census (its counter checked on known calls), and the
teacher-forward table (bf16 features and memory against fp32). No absolute
timing is asserted.
"""
import argparse
import re

import pytest
import torch

import bench_distill_step
import harness

NUM = r'([0-9.]+)'


@pytest.fixture(scope='module')
def bench():
    return bench_distill_step


BEFORE = 'I2CKD, loss before (6829419)'
BF16 = 'I2CKD, bf16 teacher'


@pytest.fixture(scope='module')
def report(bench, tmp_path_factory):
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp('bench') / 'step_cost.md'
    text = bench.main(['--quick', '--out', str(out)])
    assert torch.get_num_threads() == threads  # main's 1 thread undone
    assert out.read_text() == text
    return text


def table(report, cols):
    """The cells of the rows of the markdown table with columns ``cols``."""
    lines = report.splitlines()
    start = lines.index(harness.md_table(cols, [])[0]) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith('|'):
            break
        rows.append([c.strip() for c in line.strip('|').split('|')])
    return rows


@pytest.fixture(scope='module')
def rows(bench, report):
    """The quick run's step table rows, by variant, as numbers (ms)."""
    parsed = {}
    for cells in table(report, bench.STEP_COLS):
        line = ' | '.join(cells)
        assert len(cells) == 14, line
        setting, variant, runs, step, plain, ratio = cells[:6]
        total, low, high = map(float, re.fullmatch(
            NUM + r' \(' + NUM + '-' + NUM + r'\)', step).groups())
        row = dict(setting=setting, runs=int(runs), total=total, low=low,
                   high=high, plain=float(plain),
                   ratio=float(ratio.rstrip('x')), optim=float(cells[10]),
                   pre=float(cells[11]), coverage=float(cells[12]),
                   check=cells[13])
        for key, cell in (('student', cells[8]), ('distill', cells[9])):
            if cell == '-':
                continue
            m = re.fullmatch(NUM + r' \(\d+%\): ' + NUM + r' \+ ' + NUM,
                             cell)
            assert m, cell
            both, fwd, bwd = map(float, m.groups())
            assert both == pytest.approx(fwd + bwd, abs=0.11)
            row[f'{key}_fwd'], row[f'{key}_bwd'] = fwd, bwd
        if cells[7] != '-':
            row['teacher'] = float(re.fullmatch(NUM + r' \(\d+%\)',
                                                cells[7]).group(1))
        if cells[6] != '-':
            m = re.fullmatch(r'(-?[0-9.]+) \(([-+][0-9.]+)%\)', cells[6])
            assert m, cells[6]
            row['beyond'], row['beyond_share'] = map(float, m.groups())
        parsed[variant] = row
    return parsed


def test_quick_table_rows(rows):
    assert list(rows) == ['student alone', BEFORE, 'I2CKD', BF16]
    for row in rows.values():
        assert row['setting'] == 'ToyShapes 64x64, batch 8'
        assert row['runs'] == 3
    student = rows['student alone']
    # the student alone has no teacher or distill part; the steps have all
    assert 'teacher' not in student and 'distill_fwd' not in student
    assert 'beyond' not in student
    assert student['check'] == '-'
    for key in ('student_fwd', 'student_bwd', 'optim', 'pre', 'total',
                'plain'):
        assert student[key] > 0, key
    assert student['ratio'] == 1.0
    for name in (BEFORE, 'I2CKD', BF16):
        distill = rows[name]
        for key in ('teacher', 'student_fwd', 'student_bwd', 'distill_fwd',
                    'distill_bwd', 'optim', 'pre', 'total', 'plain'):
            assert distill[key] > 0, (name, key)
        # of the table's numbers, rounded to 0.1 ms (steps) and 0.01 (ratio)
        t, s = distill['total'], student['total']
        assert distill['ratio'] == pytest.approx(
            t / s, abs=0.006 + 0.05 / s + 0.05 * t / s ** 2)
        # the step beyond the student alone and the teacher's forward: the
        # difference of the row's own medians, and its share of the step
        beyond = t - s - distill['teacher']
        assert distill['beyond'] == pytest.approx(beyond, abs=0.16)
        assert distill['beyond_share'] == pytest.approx(
            100 * beyond / t, abs=0.06 + 100 * 0.16 / t)
    for row in rows.values():  # the median lies in the runs' range
        assert row['low'] <= row['total'] <= row['high']


def test_parts_add_up_to_the_step(rows):
    for variant, row in rows.items():
        parts = sum(row.get(k, 0.0) for k in (
            'pre', 'teacher', 'student_fwd', 'student_bwd', 'distill_fwd',
            'distill_bwd', 'optim'))
        # Per run, the parts are disjoint intervals inside the step: their
        # share is <= 1, and close to 1 unless a part of the step is missed.
        assert 0.9 <= row['coverage'] <= 1.0, variant
        # Medians of the parts need not add up exactly to the median step.
        assert parts == pytest.approx(row['total'], rel=0.2), variant


def test_split_backward_matches_plain_backward(rows, bench):
    # the quick run checked its own I2CKD variants
    for name in (BEFORE, 'I2CKD', BF16):
        assert float(rows[name]['check']) <= 1e-6, name
    # The CWD config records two student tensors, the logits computed from
    # the bottleneck output: the case the aliasing of the records is for.
    cfg = bench.toy_configs('toyshapes')['i2ckd_cwd']
    alg, optim, k = harness.build_model(cfg, (32, 32), torch.device('cpu'))
    data = harness.make_batch(32, 32, 2, k, 8)
    clock = harness.clock('cpu', torch.device('cpu'))
    assert bench.split_check(alg, optim, data, clock) <= 1e-6
    parts = bench.instrumented_step(alg, optim, data, clock)
    assert set(parts) == set(bench.PARTS) | {'total'}
    assert sum(parts[p] for p in bench.PARTS) <= parts['total']
    # The check can fail: leave the logits' distill gradient out of the
    # student's backward and the gradients differ.
    original = bench.recorded_student_tensors
    try:
        bench.recorded_student_tensors = lambda a: original(a)[:1]
        assert bench.split_check(alg, optim, data, clock) > 1e-3
    finally:
        bench.recorded_student_tensors = original


# ------------------------------------------------- operators and host waits
def test_census_counts_known_calls(bench):
    """The counter on calls whose counts are known: MMRazor's CWD
    forward+backward is 27 top-level operators; a scalar
    read, a branch on a tensor and a boolean-mask index are 3 host waits,
    counted where they were made."""
    from mmrazor.models.losses import ChannelWiseDivergence
    from torch.profiler import ProfilerActivity, profile, record_function
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 8, 4, 4, generator=g, requires_grad=True)
    t = torch.randn(2, 8, 4, 4, generator=g)
    cwd = ChannelWiseDivergence(tau=1.0)

    def calls():
        with record_function('part::distill_fwd'):
            cwd(s, t).backward()
        with record_function('part::teacher'):
            x = t.sum()
            x.item()
            if (t > 0).any():
                t[t > 0].sum()

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        calls()
    counts = harness.count_by_part(prof.events())
    # split by part, the shared counter's numbers
    assert harness.op_counts(calls) == (
        sum(v for k, v in counts.items() if k.startswith('ops_')),
        sum(v for k, v in counts.items() if k.startswith('waits_')))
    assert counts['ops_distill_fwd'] == 27
    assert 'waits_distill_fwd' not in counts
    assert counts['waits_teacher'] == 3
    # sum, item, gt, any, is_nonzero (bool), gt, index, sum
    assert counts['ops_teacher'] == 8


def test_census_table(bench, report):
    rows = {r[1]: r for r in table(report, bench.CENSUS_COLS)}
    assert list(rows) == ['student alone', BEFORE, 'I2CKD', BF16]
    student = rows['student alone']
    assert student[2] == '-' and student[4] == '-' and student[5] == '-'
    # the loss revision changes the loss's part only: the teacher's and the
    # student's operators are the same
    assert rows[BEFORE][2:4] == rows['I2CKD'][2:4]
    assert rows[BEFORE][4] != rows['I2CKD'][4]
    # the bf16 teacher changes the teacher's part only (the autocast casts
    # are inside the convolutions' calls)
    assert rows[BF16][3:6] == rows['I2CKD'][3:6]
    # the loss of the baseline revision waits 4 times per step here (its
    # label check, two finiteness checks, one nonzero for the classes); the
    # current loss never more
    assert int(rows[BEFORE][5]) == 4
    assert int(rows['I2CKD'][5]) <= 4


# ---------------------------------------------------- teacher forward table
def test_teacher_forward_table(bench, report):
    rows = table(report, bench.TEACHER_COLS)
    labels = ['fp32 teacher', 'bf16 teacher', 'fp32 channels_last teacher',
              'bf16 channels_last teacher']
    sizes = ['64x64', '128x128']
    assert [(r[0].split(', ')[1], r[1]) for r in rows] == [
        (s, label) for s in sizes for label in labels]
    for size in sizes:
        by = {r[1]: r for r in rows if f', {size},' in r[0]}
        fp32, bf16 = by['fp32 teacher'], by['bf16 teacher']
        assert fp32[4] == '1.00x' and fp32[6] == '1.00x'
        assert float(fp32[7]) == 0.0
        # bf16: about 3 significant digits (8-bit mantissa), not more
        assert 1e-4 < float(bf16[7]) < 0.05
        # memory is measured, not asserted (whether bf16 autocast saves
        # memory on a CPU depends on its kernels: the weight casts can
        # outweigh the smaller activations); the ratio column is the
        # ratio of the row's own numbers (MiB rounded to 0.1 in the table)
        for r in by.values():
            assert float(r[6].rstrip('x')) == pytest.approx(
                float(r[5]) / float(fp32[5]),
                abs=0.01 + 0.1 * float(r[5]) / float(fp32[5]) ** 2)
        # channels_last alone: the fp32 values up to summation order
        assert float(by['fp32 channels_last teacher'][7]) < 1e-4
        for r in by.values():
            assert r[8] == 'float32'  # what the losses get
            assert int(r[2]) == 3 and float(r[3]) > 0


def test_bad_teacher_setting_is_refused(bench, capsys):
    for argv in (['--teachers', 'half'], ['--step-teachers', 'bf16+nhwc'],
                 ['--step-teachers', 'bf16+']):
        with pytest.raises(SystemExit):
            bench.main(['--quick'] + argv)
        err = capsys.readouterr().err
        assert 'a teacher setting is one of fp32, bf16, fp16' in err, err


def test_settings_parse_to_labels_and_options(bench):
    assert bench.teacher_setting('fp32') == ('fp32 teacher', dict(
        teacher_precision='fp32', teacher_channels_last=False))
    assert bench.teacher_setting('bf16+cl') == (
        'bf16 channels_last teacher',
        dict(teacher_precision='bf16', teacher_channels_last=True))
    assert bench.compile_setting('default') == (
        'compiled', dict(compile_losses=True))
    assert bench.compile_setting('reduce-overhead') == (
        'compiled (reduce-overhead)',
        dict(compile_losses=dict(mode='reduce-overhead')))
    assert bench.compile_setting('backend=eager') == (
        'compiled (backend=eager)', dict(compile_losses=dict(
            backend='eager')))
    for bad in ('backend=', 'max-autotune', 'eager'):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.compile_setting(bad)


def test_committed_commands_parse(bench):
    """The options benchmarks/gpu_run.sh passes (on the CPU here)."""
    args = bench.parse_args([
        '--device', 'cpu', '--big-size', '256x512', '--big-warmup', '2',
        '--big-runs', '7', '--teacher-sizes', '64x128', '--teacher-runs',
        '3', '--no-toy', '--big-extras', '--big-cwd', '--baseline', 'none',
        '--compile-losses', 'default', 'reduce-overhead', 'backend=eager',
        '--step-teachers', 'bf16', '--teachers', 'fp32', 'bf16', '--out',
        'step.md'])
    assert args.big_size == (256, 512) and args.big_runs == 7
    assert [label for label, _ in args.compile_losses] == [
        'compiled', 'compiled (reduce-overhead)', 'compiled (backend=eager)']
    assert [label for label, _ in args.teachers] == [
        'fp32 teacher', 'bf16 teacher']
    assert args.no_toy and args.big_extras and args.big_cwd


def test_baseline_loss_needs_an_i2ckd_loss_to_replace(bench):
    """A "loss before" row on a config without I2CKDLoss would time the
    unchanged algorithm under that name: refused, naming the config."""
    from types import SimpleNamespace
    alg = SimpleNamespace(distiller=SimpleNamespace(distill_losses={}))
    with pytest.raises(ValueError, match='no I2CKDLoss in .*cwd'):
        bench.use_baseline_loss(alg, object, bench.CITYSCAPES_CWD)

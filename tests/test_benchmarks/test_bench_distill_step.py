"""Smoke test of benchmarks/bench_distill_step.py on the toy configs.

Runs the script's ``main(['--quick'])`` once (ToyShapes 64x64, batch 8,
student alone vs I2CKD, 3 runs each) and checks the table it prints: the
rows, every part measured, the parts adding up to the measured step, and the
two-phase backward giving the gradients of a plain backward. No absolute
timing is asserted.
"""
import os.path as osp
import re

import pytest
import torch

from load_file import load_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_distill_step.py')
NUM = r'([0-9.]+)'


def load_script():
    return load_file('bench_distill_step', SCRIPT)


@pytest.fixture(scope='module')
def bench():
    return load_script()


@pytest.fixture(scope='module')
def rows(bench, tmp_path_factory):
    """The quick run's table rows, by variant, as numbers (ms)."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp('bench') / 'step_cost.md'
    try:
        report = bench.main(['--quick', '--out', str(out)])
    finally:
        torch.set_num_threads(threads)  # main sets 1 thread
    assert out.read_text() == report
    parsed = {}
    for line in report.splitlines():
        if not line.startswith('| ToyShapes'):
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert len(cells) == 13, line
        setting, variant, runs, total, plain, ratio = cells[:6]
        row = dict(setting=setting, runs=int(runs), total=float(total),
                   plain=float(plain), ratio=float(ratio.rstrip('x')),
                   optim=float(cells[9]), pre=float(cells[10]),
                   coverage=float(cells[11]), check=cells[12])
        for key, cell in (('student', cells[7]), ('distill', cells[8])):
            if cell == '-':
                continue
            m = re.fullmatch(NUM + r' \(\d+%\): ' + NUM + r' \+ ' + NUM,
                             cell)
            assert m, cell
            both, fwd, bwd = map(float, m.groups())
            assert both == pytest.approx(fwd + bwd, abs=0.11)
            row[f'{key}_fwd'], row[f'{key}_bwd'] = fwd, bwd
        if cells[6] != '-':
            row['teacher'] = float(re.fullmatch(NUM + r' \(\d+%\)',
                                                cells[6]).group(1))
        parsed[variant] = row
    return parsed


def test_quick_table_rows(rows):
    assert set(rows) == {'student alone', 'I2CKD'}
    for row in rows.values():
        assert row['setting'] == 'ToyShapes 64x64, batch 8'
        assert row['runs'] == 3
    student, distill = rows['student alone'], rows['I2CKD']
    # the student alone has no teacher or distill part; the step has all
    assert 'teacher' not in student and 'distill_fwd' not in student
    assert student['check'] == '-'
    for key in ('teacher', 'student_fwd', 'student_bwd', 'distill_fwd',
                'distill_bwd', 'optim', 'pre', 'total', 'plain'):
        assert distill[key] > 0, key
    for key in ('student_fwd', 'student_bwd', 'optim', 'pre', 'total',
                'plain'):
        assert student[key] > 0, key
    assert student['ratio'] == 1.0
    assert distill['ratio'] == pytest.approx(
        distill['total'] / student['total'], abs=0.011)


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
    # the quick run checked its own I2CKD variant
    assert float(rows['I2CKD']['check']) <= 1e-6
    # The CWD config records two student tensors, the logits computed from
    # the bottleneck output: the case the aliasing of the records is for.
    cfg = bench.toy_configs('toyshapes')['i2ckd_cwd']
    alg, optim, k = bench.build_models(cfg, (32, 32), torch.device('cpu'))
    data = bench.make_batch(32, 32, 2, k, 8)
    clock = bench.Clock(torch.device('cpu'), 'cpu')
    assert bench.split_check(alg, optim, data, clock) <= 1e-6
    parts = bench.instrumented_step(alg, optim, data, clock)
    assert set(parts) == set(bench.PARTS) | {'total', 'wall'}
    assert sum(parts[p] for p in bench.PARTS) <= parts['total']
    # The check can fail: leave the logits' distill gradient out of the
    # student's backward and the gradients differ.
    original = bench.recorded_student_tensors
    try:
        bench.recorded_student_tensors = lambda a: original(a)[:1]
        assert bench.split_check(alg, optim, data, clock) > 1e-3
    finally:
        bench.recorded_student_tensors = original

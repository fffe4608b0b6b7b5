"""benchmarks/gpu_run.sh, the one command of a GPU call, in its CPU dry run
(TINY=1): the loss and step parts (b, c) at tiny sizes write their rows to
the results file, a part that fails does not stop the later ones, and the
study (d) is skipped when too little of the total time is left. The CUDA
tests (a) are the loss's own (test_i2ckd_loss.py, skipped without a GPU);
the study's dry run (TINY=1 PARTS=d) takes minutes and is not run here. ~3 min on 2 cores."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _has_revision(rev):
    return subprocess.run(['git', 'cat-file', '-e', f'{rev}^{{commit}}'],
                          cwd=ROOT, capture_output=True).returncode == 0


def _run(out, parts, baseline=None, **env):
    """gpu_run.sh OUT with TINY=1 on a copy of the checkout's files it
    reads (so that .gpu_baseline/ can be made without touching the
    checkout); returns (exit code, results text, log text)."""
    tree = osp.join(out, 'tree')
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        '.git', 'work_dirs', 'data', '.venv*', '.whl', '.gpu_baseline',
        '__pycache__', '*.pth'))
    if baseline:
        os.makedirs(osp.join(tree, '.gpu_baseline'))
        for name in ('i2ckd_loss', 'prototypes'):
            with open(osp.join(tree, '.gpu_baseline', f'{name}.py'),
                      'w') as f:
                f.write(subprocess.check_output(
                    ['git', 'show',
                     f'{baseline}:i2ckd_mm/models/losses/{name}.py'],
                    cwd=ROOT, text=True))
    res = osp.join(out, 'res')
    proc = subprocess.run(
        ['bash', osp.join(tree, 'benchmarks', 'gpu_run.sh'), res],
        env=dict(os.environ, TINY='1', PARTS=parts, PYTHON=sys.executable,
                 PYTHONPATH='', **env),
        capture_output=True, text=True, timeout=600)
    with open(osp.join(res, 'results_gpu_run.md')) as f:
        results = f.read()
    with open(osp.join(res, 'gpu_run.log')) as f:
        log = f.read()
    return proc.returncode, results, log, sorted(os.listdir(res))


def _cells(report, first):
    """Header -> cell of the loss-table row starting with ``first``."""
    lines = report.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(first))
    head = next(line for line in reversed(lines[:i])
                if line.startswith('| classes |'))
    return dict(zip([c.strip() for c in head.strip('|').split('|')],
                    [c.strip() for c in lines[i].strip('|').split('|')]))


@pytest.mark.skipif(not _has_revision('87f5c15'),
                    reason='a shallow clone without the baseline revision')
def test_dry_run_writes_loss_and_step_rows_and_skips_the_study(tmp_path):
    rc, results, log, files = _run(
        str(tmp_path), 'b c d', baseline='87f5c15', TINY_BACKEND='aot_eager',
        TOTAL='1')
    assert rc == 0, log[-3000:]
    # the machine header first, then one section per part
    assert results.startswith('# GPU run: ')
    assert 'torch ' + __import__('torch').__version__ in results
    # b: both sizes, with the before and the compiled columns in the rows
    for size in ('8x16', '16x32'):
        row = _cells(results, f'| 19 | 16 | {size} | 2 |')
        for key in ('floor ms', 'I2CKD ms', 'before ms', 'CWD ms',
                    'compiled ms', 'compiled compile s'):
            assert re.fullmatch(r'[\d.]+', row[key]), (key, row[key])
    # c: every step variant measured; compiled rows where the algorithm has
    # compile_losses, else said to be skipped
    step = results[results.index('## Distillation step'):]
    for variant in ('student alone', 'I2CKD', 'I2CKD, bf16 teacher', 'CWD',
                    'CWD, bf16 teacher'):
        assert f'| {variant} |' in step, variant
    assert ('| I2CKD, compiled (backend=aot_eager) |' in step) != \
        ('compiled rows: skipped' in step)
    assert '| bf16 teacher |' in step  # the teacher-forward table
    # d: too little time left of TOTAL
    assert re.search(r'=== d\. GPU study: skipped, -?\d+ s left of 1 s',
                     log)
    assert files == ['gpu_run.log', 'results_gpu_run.md']


def test_a_failing_part_is_reported_and_the_next_runs(tmp_path):
    """No baseline folder: the first loss part fails, its section says so,
    and the second still runs (and fails alike); the exit status is 1."""
    rc, results, log, _ = _run(str(tmp_path), 'b', TINY_BACKEND='aot_eager')
    assert rc == 1
    assert log.count("FileNotFoundError: baseline '.gpu_baseline': neither "
                     'a folder') == 2
    assert re.search(r'=== b1\. .*: exit 1 ', log)
    assert re.search(r'=== b2\. .*: exit 1 ', log)
    assert results.count('(no report: the part failed or was cut before its '
                         'rows)') == 2

"""benchmarks/harness.py: the statistics and verdict words, the table
writer, the rotation of the timing rounds, the machine lines and the
loss of an earlier revision from a folder of its files."""
import subprocess

import numpy as np
import pytest
import torch

import harness


def test_mean_ci_by_hand():
    # mean 2, sd 1, n 3: half width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732
    m, lo, hi = harness.mean_ci([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert hi == pytest.approx(2.0 + 2.484138, abs=1e-5)
    # constant differences: a zero-width interval; one value: none
    assert harness.mean_ci([0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert np.isnan(harness.mean_ci([1.0])[1])


def test_verdict_says_tied_when_the_interval_holds_zero():
    assert harness.verdict(-0.5, 4.5) == 'tied'
    assert harness.verdict(0.1, 2.0) == 'better'
    assert harness.verdict(-2.0, -0.1) == 'worse'
    assert harness.verdict(float('nan'), float('nan')) == 'tied'


def test_paired_keeps_common_seeds_without_nan():
    seeds, d = harness.paired({0: 3.0, 1: 5.0, 2: float('nan'), 7: 1.0},
                              {0: 1.0, 1: 1.5, 2: 0.0})
    assert seeds == [0, 1] and d.tolist() == [2.0, 3.5]


def test_md_table():
    assert harness.md_table(['a', 'b', 'c'], [[1, 'x', 2.5]], 'lr') == [
        '| a | b | c |', '|---|---:|---|', '| 1 | x | 2.5 |']


def test_rounds_rotate_the_order_and_return_what_a_case_times():
    calls = []
    ticks = iter(range(100))
    cases = {name: (lambda n=name: calls.append(n)) for name in 'abc'}
    cases['d'] = lambda: calls.append('d') or {'part': 1.0}
    out = harness.rounds(cases, dict(a=3, b=3, c=1, d=3), 1,
                         lambda: next(ticks))
    assert calls[:4] == list('abcd')  # warm-up
    # round 0 from a, round 1 from b, round 2 from c (c is done: skipped)
    assert calls[4:] == list('abcd') + list('bda') + list('dab')
    assert out['a'] == [1, 1, 1] and len(out['c']) == 1
    assert out['d'] == [{'part': 1.0}] * 3


def test_clock_refuses_cpu_time_on_a_gpu():
    assert harness.clock('cpu', torch.device('cpu')) is not None
    with pytest.raises(ValueError, match='CPU only'):
        harness.clock('cpu', torch.device('cuda'))


def test_machine_lines_name_the_versions():
    import mmengine
    text = '\n'.join(harness.machine_lines())
    assert f'torch {torch.__version__}, mmengine {mmengine.__version__}' \
        in text
    assert f'torch intra-op threads {torch.get_num_threads()}' in text


def _has_revision(rev):
    return subprocess.run(['git', 'cat-file', '-e', f'{rev}^{{commit}}'],
                          cwd=harness.ROOT,
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_revision('87f5c15'),
                    reason='a shallow clone without the revision')
def test_baseline_from_a_folder_of_exported_files(tmp_path):
    """--baseline FOLDER: the loss files exported from a revision (a work
    tree copied without .git has no revisions) give the same class as the
    revision itself; a folder without them is refused."""
    for name in ('i2ckd_loss', 'prototypes'):
        (tmp_path / f'{name}.py').write_text(subprocess.check_output(
            ['git', 'show', f'87f5c15:i2ckd_mm/models/losses/{name}.py'],
            cwd=harness.ROOT, text=True))
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 2, 4, 4, 8, generator=g)
    gt = torch.randint(0, 3, (2, 32, 64), generator=g)
    from_folder = harness.load_baseline(str(tmp_path))(num_classes=3)
    from_git = harness.load_baseline('87f5c15')(num_classes=3)
    assert type(from_folder).__module__ == 'i2ckd_baseline.i2ckd_loss'
    assert from_folder(s, t, gt).item() == from_git(s, t, gt).item()
    (tmp_path / 'prototypes.py').unlink()
    with pytest.raises(FileNotFoundError, match='neither a folder'):
        harness.load_baseline(str(tmp_path))

"""benchmarks/bench_i2ckd_loss.py --primitives: the lower bound it states
is computed from the rows of its own table."""
import os.path as osp
import re
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_i2ckd_loss as bench  # noqa: E402


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

"""tools/analysis_tools/plot_loss_curves.py on hand-written scalars.json."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from load_file import load_file

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis_tools',
                'plot_loss_curves.py')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def load_tool():
    return load_file('plot_loss_curves', TOOL)


LINES = [
    # what MMEngine's LoggerHook writes for an iteration-based run
    {'lr': 0.01, 'data_time': 0.1, 'loss': 3.0,
     'student.decode.loss_ce': 1.5, 'student.aux.loss_ce': 0.5,
     'student.decode.acc_seg': 40.0, 'distill.loss_i2ckd': 1.0,
     'distill.i2ckd_active': 0.9, 'distill.i2ckd_d_pos': 12.0,
     'time': 1.0, 'iter': 10, 'memory': 100, 'step': 10},
    {'lr': 0.009, 'data_time': 0.1, 'loss': 2.0,
     'student.decode.loss_ce': 1.0, 'student.aux.loss_ce': 0.4,
     'student.decode.acc_seg': 60.0, 'distill.loss_i2ckd': 0.6,
     'distill.i2ckd_active': 0.5, 'distill.i2ckd_d_pos': 10.0,
     'proto_cos_diag': 0.7, 'time': 1.0, 'iter': 20, 'memory': 100,
     'step': 20},
    {'aAcc': 80.0, 'mIoU': 50.0, 'data_time': 0.1, 'time': 0.5, 'step': 20},
]


def write_log(path, lines):
    path.write_text('\n'.join(json.dumps(r) for r in lines) + '\n')
    return str(path)


def test_series_are_the_logged_values(tmp_path):
    tool = load_tool()
    series = tool.load_scalars(write_log(tmp_path / 'scalars.json', LINES))
    assert set(series) == {
        'loss', 'student.decode.loss_ce', 'student.aux.loss_ce',
        'distill.loss_i2ckd', 'distill.i2ckd_active', 'distill.i2ckd_d_pos',
        'proto_cos_diag'
    }  # no lr/time/memory/accuracy/validation keys
    assert series['distill.loss_i2ckd'] == ([10.0, 20.0], [1.0, 0.6])
    assert series['student.aux.loss_ce'] == ([10.0, 20.0], [0.5, 0.4])
    assert series['proto_cos_diag'] == ([20.0], [0.7])
    only = tool.load_scalars(str(tmp_path / 'scalars.json'),
                             ['loss_ce$'])
    assert set(only) == {'student.decode.loss_ce', 'student.aux.loss_ce'}


def test_cli_writes_png_from_a_work_dir(tmp_path):
    run_dir = tmp_path / 'work' / '20261125_120000' / 'vis_data'
    run_dir.mkdir(parents=True)
    write_log(run_dir / 'scalars.json', LINES)
    out = tmp_path / 'curves.png'
    tool = load_tool()
    tool.main([str(tmp_path / 'work'), '--out', str(out), '--log-y'])
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_cli_errors_clearly_without_loss_keys(tmp_path):
    log = write_log(tmp_path / 'scalars.json', [LINES[2]])
    res = subprocess.run(
        [sys.executable, TOOL, log, '--out', str(tmp_path / 'x.png')],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert 'no loss keys' in res.stderr and 'mIoU' in res.stderr
    assert not (tmp_path / 'x.png').exists()


def test_errors_on_missing_and_malformed_logs(tmp_path):
    tool = load_tool()
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        tool.find_scalars(str(tmp_path))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1, "iter": 1}\nnot json\n')
    with pytest.raises(ValueError, match='bad.json:2'):
        tool.load_scalars(str(bad))

"""tools/toy/runs.py: the --cfg-options the demo, the accuracy study and
the tools tests share, the subprocess runner and the metrics reader."""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
from mmengine.config import Config, DictAction

from toy import toy_configs
from toy.runs import (TOOLS, data_options, last_metrics, run_command,
                      run_tool, schedule_options, split_options)


def _merged(options):
    """The toy I2CKD config after ``--cfg-options options`` (parsed as
    tools/train.py parses them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(toy_configs()['i2ckd'])
    cfg.merge_from_dict(parser.parse_args(['--cfg-options'] +
                                          options).cfg_options)
    return cfg


def test_options_set_what_they_say_in_the_config():
    cfg = _merged(
        data_options('/data/x') + schedule_options(7) + split_options('train'))
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.data_root == '/data/x'
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == 7
    assert cfg.param_scheduler[0].end == 7
    assert cfg.default_hooks.checkpoint.interval == 7  # at the end
    assert cfg.default_hooks.logger.interval == 1  # max(1, 7 // 5)
    prefix = cfg.test_dataloader.dataset.data_prefix
    assert prefix.img_path == 'img_dir/train'
    assert prefix.seg_map_path == 'ann_dir/train'
    # val still reads val
    assert cfg.val_dataloader.dataset.data_prefix.img_path == 'img_dir/val'

    cfg = _merged(schedule_options(1000, ckpt_interval=300))
    assert cfg.default_hooks.checkpoint.interval == 300
    assert cfg.default_hooks.logger.interval == 20  # capped
    cfg = _merged(schedule_options(1000, log_interval=3))
    assert cfg.default_hooks.logger.interval == 3


def test_tools_is_the_checkout_tools():
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert TOOLS == osp.join(root, 'tools')
    assert osp.isfile(osp.join(TOOLS, 'train.py'))
    assert osp.isfile(osp.join(TOOLS, 'dist_train.sh'))


def _py(code):
    return [sys.executable, '-c', code]


def test_run_command_captures_merged_output_and_env(tmp_path, capsys):
    code = ('import os, sys; print("out", os.environ["OMP_NUM_THREADS"], '
            'os.environ["MKL_NUM_THREADS"], os.environ["EXTRA"]); '
            'print("err", file=sys.stderr); print(os.getcwd())')
    log = tmp_path / 'run.log'
    proc = run_command(_py(code), threads=3, env=dict(EXTRA='x'),
                       log_file=str(log))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0
    assert sorted(lines[:2]) == ['err', 'out 3 3 x']
    # default working directory: the folder holding tools/
    assert lines[2] == osp.dirname(TOOLS)
    assert log.read_text() == proc.stdout
    assert capsys.readouterr().out == ''  # not streamed by default


def test_run_command_streams_live(capsys):
    proc = run_command(_py('print("a"); print("b")'), stream=True)
    assert capsys.readouterr().out == proc.stdout == 'a\nb\n'


def test_run_command_failure(tmp_path):
    code = 'print("the reason"); raise SystemExit(3)'
    with pytest.raises(RuntimeError, match=r'exit code 3[\s\S]*the reason'):
        run_command(_py(code))
    proc = run_command(_py(code), check=False)
    assert proc.returncode == 3 and proc.stdout == 'the reason\n'


def _alive(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            state = [line for line in f if line.startswith('State:')][0]
    except FileNotFoundError:
        return False
    return 'Z' not in state.split()[1]  # a zombie is dead, not yet reaped


def test_timeout_kills_everything_the_command_started(tmp_path):
    """A hung launcher (e.g. torchrun workers stuck in a collective) must
    not outlive the timeout: the grandchild is killed too."""
    pid_file = tmp_path / 'pid'
    script = f'sleep 60 & echo $! > {pid_file}; echo started; wait'
    t0 = time.time()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_command(['bash', '-c', script], timeout=2)
    assert time.time() - t0 < 10
    assert 'started' in info.value.output
    pid = int(pid_file.read_text())
    deadline = time.time() + 5
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), 'the sleep started by the command survived'


def test_run_tool_runs_tools_by_name():
    # the one tool that starts without importing torch/mmseg (0.2 s)
    proc = run_tool('analysis_tools/plot_loss_curves.py', ['--help'])
    assert 'usage: plot_loss_curves.py' in proc.stdout
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        run_tool('no_such.py', [])


def _write_rows(path, rows, mtime):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    os.utime(path, (mtime, mtime))


def test_last_metrics_reads_the_newest_row_with_the_key(tmp_path):
    wd = str(tmp_path)
    assert last_metrics(wd) is None
    now = time.time()
    # a training run: losses, then the val metrics row
    _write_rows(
        osp.join(wd, '20240101_000000', 'vis_data', 'scalars.json'),
        [{'loss': 1.0, 'iter': 1}, {'mIoU': 10.0, 'step': 2},
         {'loss': 0.5, 'iter': 3}], now - 100)
    assert last_metrics(wd)['mIoU'] == 10.0
    # a later test run's json wins
    _write_rows(osp.join(wd, '20240102_000000', '20240102_000000.json'),
                [{'mIoU': 20.0, 'aAcc': 50.0}], now)
    assert last_metrics(wd) == {'mIoU': 20.0, 'aAcc': 50.0}
    assert last_metrics(wd, key='aAcc')['aAcc'] == 50.0
    assert last_metrics(wd, key='mDice') is None

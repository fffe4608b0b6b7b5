"""tools/train.py (+ --resume) and tools/test.py on the I2CKD toy config."""
import glob
import json
import os.path as osp
import re

import pytest
import torch

from tool_helpers import I2CKD_CFG, TOOLS, run_tool
from load_file import load_file


def _load_tool(name):
    return load_file(f'_tool_{name}', osp.join(TOOLS, name))


def _iter_of(ckpt):
    return torch.load(ckpt, map_location='cpu', weights_only=False)[
        'meta']['iter']


def test_train_logs_every_loss_term_and_saves(distill_run):
    log = distill_run['first_log']
    for key in ('student.decode.loss_ce', 'student.aux.loss_ce',
                'distill.loss_i2ckd', 'distill.i2ckd_active'):
        assert key in log, key
    assert re.search(r'Iter\(train\) \[4/4\]', log)
    assert _iter_of(osp.join(distill_run['work_dir'], 'iter_4.pth')) == 4
    assert 'mIoU' in log  # the val loop ran on the student at the end


def test_resume_continues_from_saved_iteration(distill_run):
    log = distill_run['resumed_log']
    assert 'resumed' in log.lower() and 'iter_4.pth' in log
    # iterations 5 and 6 were trained, 1..4 were not repeated
    trained = [int(i) for i in re.findall(r'Iter\(train\) \[(\d+)/6\]', log)]
    assert trained == [5, 6], trained
    assert _iter_of(osp.join(distill_run['work_dir'], 'iter_6.pth')) == 6


def test_test_tool_reports_miou(distill_run, tmp_path):
    ckpt = osp.join(distill_run['work_dir'], 'iter_6.pth')
    proc = run_tool([
        osp.join(TOOLS, 'test.py'), I2CKD_CFG, ckpt, '--work-dir',
        str(tmp_path), '--cfg-options'
    ] + distill_run['options'])
    assert 'mIoU' in proc.stdout
    # MMEngine dumps the test metrics as json
    logs = glob.glob(str(tmp_path / '*' / '*.json'))
    assert len(logs) == 1
    metrics = json.loads(open(logs[0]).read().splitlines()[-1])
    assert 0.0 <= metrics['mIoU'] <= 100.0
    # the same number is printed in the log
    assert f"mIoU: {metrics['mIoU']:.4f}" in proc.stdout


def test_train_cli_flags():
    train = _load_tool('train.py')
    for flag in ('--local-rank', '--local_rank'):
        args = train.parse_args([I2CKD_CFG, flag, '3'])
        assert args.local_rank == 3
    args = train.parse_args([I2CKD_CFG, '--resume'])
    assert args.resume == 'auto'
    cfg = train.build_cfg(args)
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir.endswith(
        osp.splitext(osp.basename(I2CKD_CFG))[0])
    args = train.parse_args([I2CKD_CFG, '--resume', I2CKD_CFG, '--amp'])
    cfg = train.build_cfg(args)  # any existing file is accepted as path
    assert cfg.resume is True and cfg.load_from == I2CKD_CFG
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    args = train.parse_args([I2CKD_CFG, '--resume', '/no/such.pth'])
    with pytest.raises(FileNotFoundError, match='/no/such.pth'):
        train.build_cfg(args)
    args = train.parse_args([I2CKD_CFG])
    assert train.build_cfg(args).resume is False


def test_test_cli_flags(tmp_path):
    test = _load_tool('test.py')
    args = test.parse_args([I2CKD_CFG, '/no/ckpt.pth', '--local-rank', '1'])
    assert args.local_rank == 1
    with pytest.raises(FileNotFoundError, match='/no/ckpt.pth'):
        test.build_cfg(args)
    args = test.parse_args(
        [I2CKD_CFG, I2CKD_CFG, '--out',
         str(tmp_path), '--work-dir',
         str(tmp_path)])
    cfg = test.build_cfg(args)
    assert cfg.load_from == I2CKD_CFG
    assert cfg.test_evaluator['output_dir'] == str(tmp_path)

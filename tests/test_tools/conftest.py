"""Shared fixtures of the tools tests: tiny ToyShapes data and a distillation
run of a few iterations (trained once per test session, in subprocesses)."""
import os.path as osp

import pytest

from tool_helpers import I2CKD_CFG, TOOLS, run_tool, tiny_options


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """8 train + 2 val ToyShapes images (64x64), written by the tool."""
    from toy import make_toy_shapes
    root = str(tmp_path_factory.mktemp('toyshapes'))
    make_toy_shapes(root, num_train=8, num_val=2, size=64, seed=3)
    return root


@pytest.fixture(scope='session')
def distill_run(tmp_path_factory, toy_root):
    """tools/train.py on the I2CKD toy config: 4 iterations, a checkpoint
    every 2; then ``--resume`` (auto) with max_iters 6."""
    work_dir = str(tmp_path_factory.mktemp('distill_run'))
    first = run_tool([
        osp.join(TOOLS, 'train.py'), I2CKD_CFG, '--work-dir', work_dir,
        '--cfg-options'
    ] + tiny_options(toy_root, 4, ckpt_interval=2))
    resumed = run_tool([
        osp.join(TOOLS, 'train.py'), I2CKD_CFG, '--work-dir', work_dir,
        '--resume', '--cfg-options'
    ] + tiny_options(toy_root, 6, ckpt_interval=2))
    return dict(
        work_dir=work_dir,
        first_log=first.stdout,
        resumed_log=resumed.stdout,
        options=tiny_options(toy_root, 6, ckpt_interval=2))

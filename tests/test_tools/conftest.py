"""Shared fixtures of the tools tests: tiny ToyShapes data and a distillation
run of a few iterations (trained once per test session, in subprocesses)."""
import os.path as osp

import pytest

from toy import TOOLS, toy_configs
from toy.runs import data_options, run_tool as _run_tool, schedule_options

ROOT = osp.dirname(TOOLS)
_TOY = toy_configs()
TEACHER_CFG, STUDENT_CFG, I2CKD_CFG = (_TOY['teacher'], _TOY['student'],
                                       _TOY['i2ckd'])


def run_tool(args, timeout=300, env=None):
    """``python args...`` for ``args[0]`` a file of ``tools/``, through
    :func:`toy.runs.run_tool` (one thread, repo root, output in
    ``.stdout``); fails the test with the output tail if the tool fails.

    Kept with a path as first argument for the tools tests that call it so;
    new tests can call ``toy.runs.run_tool`` directly."""
    tool = osp.relpath(osp.abspath(args[0]), TOOLS)
    if tool.startswith('..'):
        raise ValueError(f'{args[0]} is not a file of {TOOLS}')
    proc = _run_tool(tool, args[1:], timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        pytest.fail(f'{args[0]} failed ({proc.returncode}):\n'
                    f'{proc.stdout[-4000:]}')
    return proc


def tiny_options(data_root, iters, ckpt_interval=None, teacher=True):
    """--cfg-options for a few iterations on tiny data, batch 2."""
    opts = data_options(data_root) + schedule_options(
        iters, ckpt_interval=ckpt_interval, log_interval=1) + [
            'train_dataloader.batch_size=2',
            'default_hooks.checkpoint.max_keep_ckpts=5'
        ]
    if teacher:
        # a randomly initialised teacher: the tools are under test here,
        # not the teacher's quality
        opts.append('model.teacher_ckpt=None')
    return opts


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

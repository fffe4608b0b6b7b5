"""Helpers of the tools tests: the toy configs, ``run_tool`` and the
--cfg-options of a tiny run (a plain module: test modules import it by
name, which a ``conftest`` module does not support reliably)."""
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

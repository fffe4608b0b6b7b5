"""The real launcher path on CPU: ``bash tools/dist_train.sh CONFIG 2``
(torchrun -> tools/train.py --launcher pytorch -> MMEngine init_dist, gloo)
trains the toy I2CKD config with 2 processes and global prototypes, saves a
checkpoint, and ``--resume`` continues from it on both ranks.

A probe hook (i2ckd_dist_probe.py) makes each rank save what it trained on
and its student parameters; the config under test is the toy I2CKD config
plus that hook."""
import os.path as osp
import re
import socket
import sys

import pytest
import torch
from mmengine.dist import utils as dist_utils

import i2ckd_mm  # noqa: F401  (compat.apply)

from tool_helpers import I2CKD_CFG, tiny_options
from toy.runs import run_command, run_tool

HERE = osp.dirname(osp.abspath(__file__))
# a hang (e.g. one rank waiting in a collective) fails the test instead of
# blocking the suite (gloo's own timeout is 30 min); a run takes ~25 s on 2
# idle cores, ~50 s when other jobs load them
RUN_TIMEOUT = 240


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _probe_config(tmp_path, probe_dir):
    cfg = tmp_path / 'i2ckd_toy_probe.py'
    cfg.write_text(
        f'_base_ = [{I2CKD_CFG!r}]\n'
        "custom_imports = dict(imports=['i2ckd_mm', 'i2ckd_dist_probe'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='RankProbeHook', out_dir={probe_dir!r})]"
        '\n')
    return str(cfg)


def _dist_train(cfg, work_dir, options, resume=False):
    args = [cfg, '2', '--work-dir', work_dir]
    if resume:
        args.append('--resume')
    return run_tool(
        'dist_train.sh', args + ['--cfg-options'] + options,
        timeout=RUN_TIMEOUT,
        # PYTHONPATH: the probe module; a fresh port so a parallel run or a
        # leftover process on the default 29500 cannot collide; no GPU: the
        # CPU path is under test, also on a machine that has one
        env=dict(PYTHONPATH=HERE, PORT=str(_free_port()),
                 CUDA_VISIBLE_DEVICES='')).stdout


def _trained_iters(log, max_iters):
    return [int(i) for i in
            re.findall(rf'Iter\(train\) \[(\d+)/{max_iters}\]', log)]


def _student_in_ckpt(path):
    state = torch.load(path, map_location='cpu', weights_only=False)
    prefix = 'architecture.'
    return state['meta']['iter'], {
        k[len(prefix):]: v
        for k, v in state['state_dict'].items() if k.startswith(prefix)
    }


def _assert_same(params, reference, what):
    assert params.keys() <= reference.keys(), what
    for name, value in params.items():
        assert torch.equal(value, reference[name]), f'{what}: {name}'


@pytest.fixture(scope='module')
def dist_runs(toy_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('dist_launcher')
    probe_dir = tmp / 'probe'
    probe_dir.mkdir()
    cfg = _probe_config(tmp, str(probe_dir))
    work_dir = str(tmp / 'work')
    scope = ['model.distiller.distill_losses.loss_i2ckd.prototype_scope='
             'global']
    first = _dist_train(cfg, work_dir,
                        tiny_options(toy_root, 4, ckpt_interval=2) + scope)
    resumed = _dist_train(cfg, work_dir,
                          tiny_options(toy_root, 6, ckpt_interval=2) + scope,
                          resume=True)
    probes = {
        (r, start): torch.load(str(probe_dir / f'rank{r}_from{start}.pth'),
                               weights_only=False)
        for r in (0, 1) for start in (0, 4)
    }
    return dict(work_dir=work_dir, first=first, resumed=resumed,
                probes=probes)


def test_two_gloo_processes_with_global_prototypes(dist_runs):
    for (rank, start), probe in dist_runs['probes'].items():
        assert probe['distributed'] and probe['world_size'] == 2
        assert probe['rank'] == rank
        assert probe['prototype_scope'] == 'global'
    assert _trained_iters(dist_runs['first'], 4) == [1, 2, 3, 4]
    # each rank trained on its own half of every global batch of 2 x 2
    first = [dist_runs['probes'][(r, 0)]['batches'] for r in (0, 1)]
    assert len(first[0]) == len(first[1]) == 4
    for it, (b0, b1) in enumerate(zip(*first)):
        assert len(b0) == len(b1) == 2
        assert not set(b0) & set(b1), f'iteration {it + 1}: {b0} {b1}'


def test_ranks_agree_with_the_checkpoint(dist_runs):
    """Different data on each rank, yet the same student parameters at the
    end (DDP averaged the gradients), equal to what rank 0 saved."""
    it, saved = _student_in_ckpt(osp.join(dist_runs['work_dir'],
                                          'iter_4.pth'))
    assert it == 4
    start = dist_runs['probes'][(0, 0)]['student_start']
    assert any(not torch.equal(saved[k], v) for k, v in start.items())
    for rank in (0, 1):
        _assert_same(dist_runs['probes'][(rank, 0)]['student_end'], saved,
                     f'rank {rank} after iteration 4 vs iter_4.pth')


def test_resume_continues_on_both_ranks(dist_runs):
    log = dist_runs['resumed']
    assert 'resumed' in log.lower() and 'iter_4.pth' in log
    assert _trained_iters(log, 6) == [5, 6]
    _, saved4 = _student_in_ckpt(osp.join(dist_runs['work_dir'],
                                          'iter_4.pth'))
    it, saved6 = _student_in_ckpt(osp.join(dist_runs['work_dir'],
                                           'iter_6.pth'))
    assert it == 6
    for rank in (0, 1):
        probe = dist_runs['probes'][(rank, 4)]
        assert probe['start_iter'] == 4
        # every rank loaded the checkpoint itself (DDP broadcast its
        # random initial weights before the load, not after)
        _assert_same(probe['student_start'], saved4,
                     f'rank {rank} at resume vs iter_4.pth')
        assert len(probe['batches']) == 2
        _assert_same(probe['student_end'], saved6,
                     f'rank {rank} after iteration 6 vs iter_6.pth')


@pytest.fixture
def launcher_env(monkeypatch):
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(key, value)


def test_nccl_on_cpu_names_the_gloo_option(launcher_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(RuntimeError, match='env_cfg.dist_cfg.backend=gloo'):
        dist_utils._init_dist_pytorch('nccl')
    assert not torch.distributed.is_initialized()


def test_gpu_path_is_upstream_code(launcher_env, monkeypatch):
    """With an accelerator the patch steps aside: MMEngine's own function
    runs and calls torch.cuda.set_device first."""
    calls = []

    def set_device(device):
        calls.append(device)
        raise RuntimeError('stop before init_process_group')

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'set_device', set_device)
    with pytest.raises(RuntimeError, match='stop before'):
        dist_utils._init_dist_pytorch('nccl')
    assert calls == [0]
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_request_gpus_unless_told_not_to(tmp_path, script):
    """A fake ``srun`` on PATH prints the arguments the script gives it."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    srun.chmod(0o755)
    env = dict(PATH=f'{tmp_path}:/usr/bin:/bin', GPUS='4', GPUS_PER_NODE='2')

    def srun_args(**extra):
        out = run_tool(script, ['part', 'job', 'cfg.py', 'x'],
                       env=dict(env, **extra)).stdout
        return [a for a in out.splitlines() if not a.startswith('+')]

    args = srun_args()
    assert '--gres=gpu:2' in args and '--ntasks=4' in args
    assert '--launcher=slurm' in args
    args = srun_args(GRES='')  # CPU-only cluster
    assert not any(a.startswith('--gres') for a in args)
    assert '--ntasks-per-node=2' in args
    assert '--gres=gpu:a100:2' in srun_args(GRES='gpu:a100:2')


def test_slurm_and_mpi_launchers_init_on_cpu():
    """MMEngine's slurm and mpi initialisers (what tools/slurm_train.sh and
    mpirun reach) give a gloo process group on CPU, one process each."""
    code = '''
import os, i2ckd_mm, torch.distributed as dist
from mmengine.dist import init_dist
for launcher, env in (
        ('slurm', dict(SLURM_PROCID='0', SLURM_NTASKS='1',
                       SLURM_NODELIST='localhost', SLURM_LOCALID='0')),
        ('mpi', dict(OMPI_COMM_WORLD_LOCAL_RANK='0', OMPI_COMM_WORLD_SIZE='1',
                     OMPI_COMM_WORLD_RANK='0'))):
    os.environ.update(env)
    init_dist(launcher, backend='gloo')
    print(launcher, dist.get_backend(), dist.get_world_size())
    dist.destroy_process_group()
'''
    out = run_command(
        [sys.executable, '-c', code], timeout=RUN_TIMEOUT,
        env=dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()),
                 CUDA_VISIBLE_DEVICES='')).stdout
    assert 'slurm gloo 1' in out and 'mpi gloo 1' in out, out

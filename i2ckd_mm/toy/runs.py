"""Run the command-line tools in subprocesses, for the demo, the accuracy
study and the tools tests (one implementation of the --cfg-options they
share and of the subprocess call)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

#: The repository (or, for a regular install, the package's .mim folder)
#: that holds ``tools/``.
_PKG = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tools_dir() -> str:
    """Absolute path of the ``tools/`` folder (checkout or .mim install)."""
    for root in (osp.dirname(_PKG), osp.join(_PKG, '.mim')):
        if osp.isfile(osp.join(root, 'tools', 'train.py')):
            return osp.join(root, 'tools')
    raise FileNotFoundError(
        f'tools/train.py not found next to {_PKG} nor in its .mim folder')


def data_options(data_root: str) -> List[str]:
    """--cfg-options pointing the train, val and test dataloaders at
    ``data_root``."""
    return [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]


def split_options(split: str) -> List[str]:
    """--cfg-options making the *test* dataloader read ``split``
    (``img_dir/<split>``, ``ann_dir/<split>``)."""
    return [
        f'test_dataloader.dataset.data_prefix.img_path=img_dir/{split}',
        f'test_dataloader.dataset.data_prefix.seg_map_path=ann_dir/{split}'
    ]


def schedule_options(iters: int,
                     ckpt_interval: Optional[int] = None,
                     log_interval: Optional[int] = None) -> List[str]:
    """--cfg-options for a run of ``iters`` iterations: one validation at the
    end, a checkpoint every ``ckpt_interval`` (default: at the end)."""
    if log_interval is None:
        log_interval = max(1, min(20, iters // 5))
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={iters}',
        f'default_hooks.checkpoint.interval={ckpt_interval or iters}',
        f'default_hooks.logger.interval={log_interval}'
    ]


def run_tool(tool: str,
             args: Sequence[str],
             threads: int = 1,
             log_file: Optional[str] = None,
             timeout: Optional[float] = None,
             env: Optional[Dict[str, str]] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python tools/<tool> args...``.

    One intra-op thread by default: on a small machine shared with other
    jobs, OpenMP threads spin-waiting for each other made a step 10-30x
    slower.

    Args:
        tool (str): File name under ``tools/`` (e.g. ``'train.py'``).
        args (Sequence[str]): Its arguments.
        threads (int): OMP_NUM_THREADS / MKL_NUM_THREADS of the run.
        log_file (str, optional): Write stdout+stderr there; otherwise they
            are captured in the returned process's ``stdout``.
        timeout (float, optional): Seconds before the run is killed.
        env (dict, optional): Extra environment variables.
        check (bool): Raise ``RuntimeError`` with the output tail if the tool
            fails.

    Returns:
        subprocess.CompletedProcess: ``stdout`` holds the output (text) when
        no ``log_file`` was given.
    """
    full_env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                    MKL_NUM_THREADS=str(threads))
    full_env.update(env or {})
    cmd = [sys.executable, osp.join(tools_dir(), tool)] + list(args)
    root = osp.dirname(tools_dir())
    if log_file:
        with open(log_file, 'w') as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                  env=full_env, cwd=root, timeout=timeout,
                                  text=True)
        with open(log_file) as f:
            proc.stdout = f.read()
    else:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=full_env,
                              cwd=root, timeout=timeout, text=True)
    if check and proc.returncode != 0:
        where = f' (log: {log_file})' if log_file else ''
        raise RuntimeError(f'{tool} failed with exit code {proc.returncode}'
                           f'{where}:\n{proc.stdout[-4000:]}')
    return proc


def last_metrics(work_dir: str, key: str = 'mIoU') -> Optional[dict]:
    """The last metrics row holding ``key`` that MMEngine's LoggerHook wrote
    under ``work_dir`` (``<ts>/vis_data/scalars.json`` of a training run or
    ``<ts>/<ts>.json`` of a test run), or None."""
    files = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')) +
        glob.glob(osp.join(work_dir, '*', '*.json')),
        key=osp.getmtime)
    for path in reversed(files):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rows = [r for r in rows if key in r]
        if rows:
            return rows[-1]
    return None

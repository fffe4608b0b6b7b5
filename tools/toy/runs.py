"""Run the command-line tools in subprocesses, for the demo, the accuracy
study and the tools tests (one implementation of the --cfg-options they
share and of the subprocess call)."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import threading
from typing import Dict, List, Optional, Sequence

#: The ``tools/`` folder that holds this ``toy`` package.
TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


def run_command(cmd: Sequence[str],
                threads: int = 1,
                log_file: Optional[str] = None,
                timeout: Optional[float] = None,
                env: Optional[Dict[str, str]] = None,
                check: bool = True,
                stream: bool = False,
                cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` with stdout+stderr captured (and optionally shown live).

    The command runs in its own process group, so a timeout or an interrupt
    (Ctrl-C in the demo) ends everything it started, e.g. the workers of
    ``torchrun`` under ``tools/dist_train.sh``, instead of leaving them
    holding the port and the CPU.

    Args:
        cmd (Sequence[str]): The command and its arguments.
        threads (int): OMP_NUM_THREADS / MKL_NUM_THREADS of the run.
        log_file (str, optional): Also write the output there.
        timeout (float, optional): Seconds before the whole process group is
            killed and ``subprocess.TimeoutExpired`` (with the output so far)
            is raised.
        env (dict, optional): Extra environment variables.
        check (bool): Raise ``RuntimeError`` with the output tail if the
            command fails.
        stream (bool): Also copy the output to ``sys.stdout`` line by line
            as it comes (the demo's live MMEngine log).
        cwd (str, optional): Working directory; default the folder above
            ``tools/`` (the repository root).

    Returns:
        subprocess.CompletedProcess: ``stdout`` holds the whole output.
    """
    full_env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                    MKL_NUM_THREADS=str(threads))
    full_env.update(env or {})
    cmd = [str(c) for c in cmd]
    lines: List[str] = []
    log = open(log_file, 'w') if log_file else None
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd or osp.dirname(TOOLS), text=True,
            errors='replace', start_new_session=True)

        def pump():
            # a thread, so that the timeout holds while no line comes
            for line in proc.stdout:
                lines.append(line)
                if log is not None:
                    log.write(line)
                    log.flush()
                if stream:
                    sys.stdout.write(line)
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except BaseException:  # timeout, KeyboardInterrupt, ...
            _kill_group(proc)
            reader.join(5)
            raise
        reader.join()
    except subprocess.TimeoutExpired as e:
        raise subprocess.TimeoutExpired(
            cmd, timeout, output=''.join(lines)) from e
    finally:
        if log is not None:
            log.close()
    out = ''.join(lines)
    if check and returncode != 0:
        where = f' (log: {log_file})' if log_file else ''
        raise RuntimeError(f'{" ".join(cmd[:2])} failed with exit code '
                           f'{returncode}{where}:\n{out[-4000:]}')
    return subprocess.CompletedProcess(cmd, returncode, stdout=out)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group that ``run_command`` started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    proc.wait()


def run_tool(tool: str,
             args: Sequence[str],
             threads: int = 1,
             log_file: Optional[str] = None,
             timeout: Optional[float] = None,
             env: Optional[Dict[str, str]] = None,
             check: bool = True,
             stream: bool = False) -> subprocess.CompletedProcess:
    """Run a tool of ``tools/``: ``python tools/<tool> args...`` for a
    ``.py`` file, ``bash tools/<tool> args...`` for a ``.sh`` launcher.

    One intra-op thread by default: on a small machine shared with other
    jobs, OpenMP threads spin-waiting for each other made a step 10-30x
    slower.

    Args:
        tool (str): File name under ``tools/`` (e.g. ``'train.py'``,
            ``'dist_train.sh'``).
        args (Sequence[str]): Its arguments.
        threads (int): OMP_NUM_THREADS / MKL_NUM_THREADS of the run.
        log_file (str, optional): Also write stdout+stderr there.
        timeout (float, optional): Seconds before the run (with every
            process it started) is killed; raises
            ``subprocess.TimeoutExpired``.
        env (dict, optional): Extra environment variables.
        check (bool): Raise ``RuntimeError`` with the output tail if the tool
            fails.
        stream (bool): Also print the output live.

    Returns:
        subprocess.CompletedProcess: ``stdout`` holds the output (text).
    """
    path = osp.join(TOOLS, tool)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no tool {tool!r} in {TOOLS}')
    runner = ['bash'] if tool.endswith('.sh') else [sys.executable]
    return run_command(runner + [path] + list(args), threads=threads,
                       log_file=log_file, timeout=timeout, env=env,
                       check=check, stream=stream)


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

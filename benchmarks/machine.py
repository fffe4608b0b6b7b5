"""The machine lines every benchmark report starts with (one source)."""
import datetime
import os
import platform
import time
from typing import List

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or ``'unknown'``."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def machine_lines(threads_note: str = '') -> List[str]:
    """Date, CPU, thread count, package versions, load and GPU as markdown
    list lines. ``threads_note`` says how the thread count was set."""
    import mmengine
    import mmrazor
    import mmseg
    lines = [
        f'- date: {datetime.datetime.now():%Y-%m-%d %H:%M}',
        f'- CPU: {cpu_model()}; nproc {os.cpu_count()}; torch intra-op '
        f'threads {torch.get_num_threads()}{threads_note}',
        f'- torch {torch.__version__}, mmengine {mmengine.__version__}, '
        f'mmseg {mmseg.__version__}, mmrazor {mmrazor.__version__}, Python '
        f'{platform.python_version()}',
        f'- load average at start: {os.getloadavg()[0]:.2f} (1 min)',
    ]
    if torch.cuda.is_available():
        lines.append(f'- GPU: {torch.cuda.get_device_name(0)}')
    else:
        lines.append('- GPU: none available (torch.cuda.is_available() is '
                     'False): GPU rows were not measured')
    return lines


def finish_report(lines: List[str], t_start: float, out: str = None) -> str:
    """Add the total time and load line, print the markdown report and write
    it to ``out`` if given; returns the report."""
    lines = lines + [
        f'Total benchmark time {time.time() - t_start:.0f} s; load average '
        f'at end {os.getloadavg()[0]:.2f}.'
    ]
    report = '\n'.join(lines) + '\n'
    print(report)
    if out:
        with open(out, 'w') as f:
            f.write(report)
    return report

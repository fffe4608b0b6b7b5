"""The machine lines every benchmark report starts with (one source)."""
import datetime
import os
import platform
import time
from typing import Callable, List, Tuple

import torch

#: Operators that make the host wait for the device on a GPU: a scalar read
#: (``.item()``, ``bool(t)``, ``int(t)`` all end in ``_local_scalar_dense``)
#: or an output whose size depends on values (``nonzero``, also behind
#: boolean-mask indexing; ``unique``; ``masked_select``). Counted at any
#: depth of the profiler's call tree.
HOST_WAIT_OPS = ('aten::_local_scalar_dense', 'aten::nonzero',
                 'aten::_unique2', 'aten::unique_dim',
                 'aten::unique_consecutive', 'aten::masked_select')


def is_top_level(event) -> bool:
    """An ``aten::`` profiler event with no ``aten::`` event above it: an
    operator the Python code or autograd issued (one host round-trip), not
    one of another operator's internal calls."""
    if not event.name.startswith('aten::'):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith('aten::'):
            return False
        parent = parent.cpu_parent
    return True


def op_counts(fn: Callable[[], None]) -> Tuple[int, int]:
    """Top-level operators (:func:`is_top_level`) and host waits
    (:data:`HOST_WAIT_OPS`, any depth) of one call of ``fn``, counted with
    ``torch.profiler`` (CPU activity: the same count on any device)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.events()
    return (sum(map(is_top_level, events)),
            sum(e.name in HOST_WAIT_OPS for e in events))


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

"""The one harness of the benchmarks and studies here (benchmarks/README.md).

Timing, peak memory, operator counts, the machine lines, model and batch
builders, the loss of an earlier revision, results (CSV, paired differences,
t intervals, verdicts, tables) and the studies' toy runs. Scripts here
import it as ``harness``; it puts ``tools/`` on ``sys.path`` for ``toy``.
``python benchmarks/harness.py`` prints the machine lines.
"""
import argparse
import csv
import datetime
import glob
import itertools
import json
import os
import os.path as osp
import subprocess
import sys
import threading
import time
import types
import warnings
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.join(ROOT, 'tools') not in sys.path:  # the toy package (tools/toy)
    sys.path.append(osp.join(ROOT, 'tools'))
from toy import (data_options, last_metrics, run_tool,  # noqa: E402
                 schedule_options, split_options)

IGNORE = 255


# ------------------------------------------------------------------ timing
def clock(kind: str, device: torch.device) -> Callable[[], float]:
    """Seconds: ``'wall'``, ``torch.utils.benchmark.timer`` (synchronised);
    ``'cpu'``, ``time.process_time`` (not counting the time other jobs hold
    the core; refused on a GPU, whose work is not this process's)."""
    if kind == 'wall':
        return benchmark.timer
    if kind != 'cpu' or device.type != 'cpu':
        raise ValueError(f'clock {kind!r} on {device.type}: the CPU-time '
                         "clock is for the CPU only; use 'wall'")
    return time.process_time


def rounds(cases: Dict[str, Callable], runs: Union[int, Dict[str, int]],
           warmup: Union[int, Dict[str, int]], now: Callable[[], float],
           log: Optional[Callable] = None) -> Dict[str, list]:
    """Time the cases in interleaved rounds after ``warmup`` calls each.

    Round r calls every case still due once, starting at case
    ``r % len(cases)``; ``runs``/``warmup`` are ints or per case; ``log(r,
    results so far)`` after each round. Returns per case the seconds of each
    call, or what it returned where that is a dict (a case timing parts).
    """
    names = list(cases)
    runs = runs if isinstance(runs, dict) else dict.fromkeys(names, runs)
    warm = warmup if isinstance(warmup, dict) else dict.fromkeys(
        names, warmup)
    for name in names:
        for _ in range(warm[name]):
            cases[name]()
    out = {name: [] for name in names}
    for r in range(max(runs.values(), default=0)):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if r < runs[name]:
                t0 = now()
                got = cases[name]()
                dt = now() - t0
                out[name].append(got if isinstance(got, dict) else dt)
        if log:
            log(r, out)
    return out


def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Extra bytes of tensor memory at the peak of one call of ``fn``:
    CUDA ``max_memory_allocated`` above the memory before; CPU the peak of
    the running sum of the allocations and frees ``torch.profiler`` saw."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    # no public API has the memory events in time order: kineto's results
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]'), key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events),
                                    initial=0))


#: Operators that make the host wait for the device on a GPU: a scalar read
#: (``.item()``, ``bool(t)``, ``int(t)`` end in ``_local_scalar_dense``) or
#: an output whose size depends on values (``nonzero``, also behind
#: boolean-mask indexing; ``unique``; ``masked_select``).
HOST_WAIT_OPS = ('aten::_local_scalar_dense', 'aten::nonzero',
                 'aten::_unique2', 'aten::unique_dim',
                 'aten::unique_consecutive', 'aten::masked_select')


def count_by_part(events) -> Dict[str, int]:
    """``ops_<part>``: top-level ATen operators (no ``aten::`` event above:
    one host round-trip each); ``waits_<part>``: :data:`HOST_WAIT_OPS` at
    any depth; part: the innermost ``record_function('part::<name>')``
    around the event, else ``other``."""
    counts = defaultdict(int)
    for e in events:
        if not e.name.startswith('aten::'):
            continue
        part, top, p = None, True, e.cpu_parent
        while p is not None:
            top = top and not p.name.startswith('aten::')
            if part is None and p.name.startswith('part::'):
                part = p.name[len('part::'):]
            p = p.cpu_parent
        counts[f'ops_{part or "other"}'] += top
        counts[f'waits_{part or "other"}'] += e.name in HOST_WAIT_OPS
    return {k: v for k, v in counts.items() if v}


def op_counts(fn: Callable[[], None]) -> Tuple[int, int]:
    """(top-level operators, host waits) of one call of ``fn`` (counted on
    the CPU's profiler events: the same on any device)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts = count_by_part(prof.events())
    return tuple(sum(v for k, v in counts.items() if k.startswith(kind))
                 for kind in ('ops_', 'waits_'))


# ----------------------------------------------------------------- reports
def machine_lines(threads_note: str = '') -> List[str]:
    """Date, CPU, threads, versions (MMEngine's ``collect_env`` and ours),
    load and GPUs as markdown list lines."""
    import mmcv
    import mmrazor
    import mmseg
    from mmengine.utils.dl_utils import collect_env
    env = collect_env()
    gpus = [f'{v} ({k})' for k, v in env.items() if k.startswith('GPU ')]
    cpu = 'unknown'
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return [
        f'- date: {datetime.datetime.now():%Y-%m-%d %H:%M}',
        f'- CPU: {cpu}; nproc {os.cpu_count()}; torch intra-op '
        f'threads {torch.get_num_threads()}{threads_note}',
        f'- torch {env["PyTorch"]}, mmengine {env["MMEngine"]}, mmcv '
        f'{mmcv.__version__}, mmseg {mmseg.__version__}, mmrazor '
        f'{mmrazor.__version__}, Python {env["Python"].split()[0]}',
        f'- load average at start: {os.getloadavg()[0]:.2f} (1 min)',
        '- GPU: ' + (', '.join(gpus) if gpus else 'none available '
                     '(torch.cuda.is_available() is False): GPU rows were '
                     'not measured'),
    ]


def add_common_args(p: argparse.ArgumentParser, device: str) -> None:
    """The options both benchmarks share (benchmarks/README.md)."""
    p.add_argument('--quick', action='store_true', help='a short smoke run')
    p.add_argument('--device', default=device,
                   choices=('auto', 'cpu', 'cuda')[device != 'auto':])
    p.add_argument('--out', help='also write the markdown report here')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--clock', choices=('cpu', 'wall'), help="default: 'cpu' "
                   "on a CPU with one thread, else 'wall'")
    p.add_argument('--runs', type=int, help='timed runs per case')
    p.add_argument('--warmup', type=int, help='warm-up runs per case')
    p.add_argument('--baseline', metavar='REV', help='git revision (or a '
                   'folder of its loss files) of the "before" loss')


def hw(text: str) -> Tuple[int, int]:
    """An ``HxW`` command-line value, e.g. ``128x256``."""
    try:
        h, w = (int(x) for x in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r}: a size is HxW, e.g. 128x256') from None
    return h, w


def parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse; refuse ``--device cuda`` without CUDA and CPU time on it."""
    args = p.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda but torch.cuda.is_available() is False')
    if args.device == 'cuda' and args.clock == 'cpu':
        p.error('--clock cpu: the CPU-time clock is for the CPU only')
    return args


def clock_kind(args, device: torch.device) -> str:
    """Wall on a GPU; on the CPU ``--clock``, by default CPU time with one
    thread, else wall."""
    if device.type != 'cpu':
        return 'wall'
    return args.clock or ('cpu' if args.threads == 1 else 'wall')


def header(title: str, script: str, argv: Optional[List[str]],
           notes: Sequence[str] = ()) -> List[str]:
    """Title, machine lines, notes and the command of a report."""
    argv = sys.argv[1:] if argv is None else argv
    note = f' (set with --threads {torch.get_num_threads()})'
    return ([f'# {title}', ''] + machine_lines(note) +
            [f'- {n}' for n in notes]
            + [f'- command: `python benchmarks/{script} {" ".join(argv)}`'])


def finish_report(lines: List[str], t_start: float,
                  out: Optional[str] = None) -> str:
    """Add the total time and load, print the report and write it to
    ``out``; returns it."""
    report = '\n'.join(lines + [
        f'Total benchmark time {time.time() - t_start:.0f} s; load average '
        f'at end {os.getloadavg()[0]:.2f}.']) + '\n'
    print(report)
    if out:
        with open(out, 'w') as f:
            f.write(report)
    return report


def md_table(head: Sequence[str], rows: Sequence[Sequence],
             align: str = '') -> List[str]:
    """Markdown table lines; ``align``: one letter per column, ``r`` for a
    right-aligned one (default left)."""
    align = align.ljust(len(head), 'l')[:len(head)]
    return (['| ' + ' | '.join(head) + ' |',
             '|' + ''.join('---:|' if a == 'r' else '---|' for a in align)] +
            ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows])


# ---------------------------------------------------------- models, inputs
def config_path(name: str) -> str:
    """A shipped config of ``configs/i2ckd`` by file name."""
    return osp.join(ROOT, 'configs', 'i2ckd', name)


def build_model(cfg_path: str, size: Optional[Tuple[int, int]],
                device: torch.device, student_only: bool = False,
                options: Optional[dict] = None, cwd_only: bool = False):
    """(model, optimizer wrapper, class count) of a config, random weights.

    A distillation config gives its algorithm (``student_only``: its
    student), a segmentation config its segmentor; ``size``: the data
    preprocessor's (h, w); ``options``: more algorithm keys; ``cwd_only``
    drops the I2CKD losses and their connectors. SyncBN becomes BN.
    """
    import i2ckd_mm  # noqa: F401  (registers the algorithm and loss)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmrazor.registry import MODELS as RAZOR_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model
    distill = model_cfg.get('type') == 'I2CKDDistill' and not student_only
    student_cfg = model_cfg.get('architecture', model_cfg)
    student_cfg.pretrained = None  # no ImageNet download
    if size is not None:
        student_cfg.data_preprocessor.size = tuple(size)
    with warnings.catch_warnings():
        # 'no teacher_ckpt given': random teacher weights are the point here
        warnings.simplefilter('ignore')
        if distill:
            model_cfg.update(options or {})
            if cwd_only:
                drop_i2ckd_losses(model_cfg.distiller)
            model_cfg.teacher_ckpt = None
            if 'cfg_path' not in model_cfg.teacher:
                model_cfg.teacher.pretrained = None
            model = RAZOR_MODELS.build(model_cfg)
        else:
            model = SEG_MODELS.build(student_cfg)
    # one process, no process group: SyncBN would fail
    model = revert_sync_batchnorm(model).to(device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    student = model.student if distill else model
    return model, optim, student.decode_head.num_classes


def drop_i2ckd_losses(distiller) -> None:
    """Remove the I2CKD losses, their mappings and connectors from a
    distiller config (what is left: the other losses, e.g. CWD)."""
    names = [n for n, c in distiller.distill_losses.items()
             if c.get('type') == 'I2CKDLoss']
    if len(names) == len(distiller.distill_losses):
        raise ValueError(f'cwd_only: no other loss than I2CKD ({names})')
    for name in names:
        distiller.distill_losses.pop(name)
        for record in distiller.loss_forward_mappings.pop(name).values():
            if record.get('connector'):
                distiller.connectors.pop(record['connector'])


def make_batch(h: int, w: int, n: int, num_classes: int, block: int,
               seed: int = 0) -> dict:
    """A raw batch: uint8 images (3, h, w) and labels of random
    ``block``-pixel squares of one class each, 5 % of pixels ignored."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(
            torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        blocks = torch.randint(0, num_classes, (1, 1, -(-h // block),
                                                -(-w // block)),
                               generator=g).float()
        labels = torch.nn.functional.interpolate(
            blocks, scale_factor=block, mode='nearest')[0, :, :h, :w].long()
        labels[torch.rand(labels.shape, generator=g) < 0.05] = IGNORE
        sample = SegDataSample(gt_sem_seg=PixelData(data=labels))
        sample.set_metainfo(
            dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def load_baseline(rev: str):
    """``I2CKDLoss`` of git revision ``rev`` (or of the ``i2ckd_loss.py``
    and ``prototypes.py`` in folder ``rev``: a copy without ``.git``),
    imported as package ``i2ckd_baseline``, unregistered."""
    import importlib.util
    import tempfile
    tmp = tempfile.mkdtemp(prefix='i2ckd_baseline_')
    pkg = types.ModuleType('i2ckd_baseline')
    pkg.__path__ = [tmp]
    sys.modules['i2ckd_baseline'] = pkg
    for name in ('prototypes', 'i2ckd_loss'):
        try:
            if osp.isdir(rev):
                with open(osp.join(rev, f'{name}.py')) as f:
                    src = f.read()
            else:
                src = subprocess.check_output(
                    ['git', 'show', f'{rev}:i2ckd_mm/models/losses/{name}.py'],
                    cwd=ROOT, text=True, stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            raise FileNotFoundError(
                f'baseline {rev!r}: neither a folder holding i2ckd_loss.py '
                f'and prototypes.py nor a git revision of {ROOT} '
                f'({getattr(e, "stderr", "") or e})') from None
        path = osp.join(tmp, f'{name}.py')
        with open(path, 'w') as f:
            f.write(src.replace('@MODELS.register_module()', ''))
        spec = importlib.util.spec_from_file_location(
            f'i2ckd_baseline.{name}', path)
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules['i2ckd_baseline.i2ckd_loss'].I2CKDLoss


# ----------------------------------------------------------------- results
_LOCK = threading.Lock()


def read_csv(path: str, number: str = 'mIoU') -> List[dict]:
    """Rows of a results CSV (none if it is missing): ``seed`` as int,
    column ``number`` as float."""
    if not osp.isfile(path):
        return []
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if 'seed' in r:
            r['seed'] = int(r['seed'])
        r[number] = float(r[number])
    return rows


def append_csv(path: str, fields: Sequence[str], rows: List[dict]) -> None:
    """Append ``rows`` (a header first in a new file); thread-safe."""
    with _LOCK:
        new = not osp.isfile(path)
        with open(path, 'a', newline='') as f:
            w = csv.DictWriter(f, fields)
            if new:
                w.writeheader()
            w.writerows(rows)


def paired(a: Dict[int, float], b: Dict[int, float]):
    """(seeds, differences a - b) over the seeds both have, NaNs left out."""
    seeds = [s for s in sorted(set(a) & set(b))
             if not (np.isnan(a[s]) or np.isnan(b[s]))]
    return seeds, np.array([a[s] - b[s] for s in seeds], dtype=float)


def mean_ci(d) -> Tuple[float, float, float]:
    """Mean of ``d`` and its 95 % two-sided t interval (``scipy.stats``;
    NaN below 2 values)."""
    from scipy import stats
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float('nan'),
                float('nan'), float('nan'))
    with np.errstate(all='ignore'), warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # constant d
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    return float(d.mean()), float(ci.low), float(ci.high)


def verdict(lo: float, hi: float) -> str:
    """'better' / 'worse' where the interval excludes zero, else 'tied'."""
    return 'better' if lo > 0 else 'worse' if hi < 0 else 'tied'


# --------------------------------------------------- toy runs (the studies)
TOY_DATA = dict(num_train=300, num_val=60, num_test=200)
#: Config text of a run with per-class IoU in its metrics.
CLASS_METRIC = (
    "custom_imports = dict(imports=['i2ckd_mm'], "
    "allow_failed_imports=False)\n"
    "val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])\n"
    "test_evaluator = val_evaluator\n")
CLASS_FIELDS = ['dataset', 'split', 'arm', 'seed', 'class', 'IoU']
CURVE_FIELDS = ['dataset', 'arm', 'seed', 'iteration', 'mIoU']
FIELDS = ['dataset', 'split', 'arm', 'seed', 'mIoU', 'iterations', 'wall_s']


def side_csv(path: str, kind: str) -> str:
    """``<stem>_<kind>.csv`` beside a results CSV."""
    return path[:-4] + f'_{kind}.csv'


def done(rows: List[dict], dataset: str, arm: str, seed: int) -> bool:
    """Whether ``rows`` hold both the val and the test row of a run."""
    return {'val', 'test'} <= {r['split'] for r in rows if r['dataset'] ==
                               dataset and r['arm'] == arm and
                               r['seed'] == seed}


def make_data(root: str, dataset: str, seed: int, **sizes) -> str:
    """A toy dataset at ``root`` (written once, atomically)."""
    from toy import make_toy_shapes, make_toy_streets
    if not osp.isdir(osp.join(root, 'img_dir', 'test')):
        make = dict(toyshapes=make_toy_shapes,
                    toystreets=make_toy_streets)[dataset]
        make(root + '.tmp', seed=seed, **dict(TOY_DATA, **sizes))
        os.replace(root + '.tmp', root)
    return root


def training_seconds(run_dir: str, ckpt: str) -> float:
    """Wall time of a training run: from the start in the name of MMEngine's
    log folder (``YYYYmmdd_HHMMSS``) to the final checkpoint (read from the
    files: it holds for a run an interrupted study had started too)."""
    starts = []
    for name in os.listdir(run_dir):
        try:
            starts.append(time.mktime(time.strptime(name, '%Y%m%d_%H%M%S')))
        except ValueError:
            continue
    if not starts:
        raise RuntimeError(f'no MMEngine log folder under {run_dir}')
    return osp.getmtime(ckpt) - min(starts)


def curve_points(run_dir: str) -> List[Tuple[int, float]]:
    """(iteration, val mIoU) of every validation of the training run."""
    out = []
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                r = json.loads(line) if line.strip() else {}
                if 'mIoU' in r:
                    out.append((int(r['step']), float(r['mIoU'])))
    return sorted(dict(out).items())


def run_arm(p: dict, run_dir: str, arm: str, seed: int, cfg: str,
            extra: str, opts: List[str], iters: int) -> str:
    """Train one run of protocol ``p`` and record it.

    Writes ``run_dir/config.py`` (``cfg`` + ``extra`` config text, +
    :data:`CLASS_METRIC` where ``p['per_class']``), trains (unless its last
    checkpoint is there) with ``opts`` + the data, seed and schedule
    options (``p['val_points']`` validations), tests the last checkpoint
    on the test split and appends the val and test rows to ``p['csv']``
    (with ``per_class``: per-class IoU and the val curve to its
    ``_classes`` / ``_curves`` CSVs). Returns a status line.
    """
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = osp.join(run_dir, 'config.py')
    with open(cfg_path, 'w') as f:
        f.write(f'_base_ = [{cfg!r}]\n{extra}' +
                (CLASS_METRIC if p.get('per_class') else ''))
    opts = (data_options(p['data_root']) + [f'randomness.seed={seed}'] +
            opts + schedule_options(iters) + list(p.get('options', [])))
    if p.get('val_points'):
        every = max(1, iters // p['val_points'])
        opts.append(f'train_cfg.val_interval={every}')
    ckpt = osp.join(run_dir, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        run_tool('train.py', [cfg_path, '--work-dir', run_dir] +
                 list(p.get('train_args', [])) + ['--cfg-options'] + opts,
                 log_file=osp.join(run_dir, 'train.log'))
    wall = training_seconds(run_dir, ckpt)
    curve = curve_points(run_dir)
    if not curve:
        raise RuntimeError(f'no val mIoU under {run_dir}')
    if done(read_csv(p['csv']), p['dataset'], arm, seed):
        return (f'trained again (no checkpoint here), val {curve[-1][1]:.2f}'
                '; the CSV keeps the rows of the first training')
    test_dir = osp.join(run_dir, 'test')
    run_tool('test.py', [cfg_path, ckpt, '--work-dir', test_dir,
                         '--cfg-options'] + opts + split_options('test'),
             log_file=osp.join(run_dir, 'test.log'))
    test = last_metrics(test_dir)
    base = dict(dataset=p['dataset'], arm=arm, seed=seed)
    if p.get('per_class'):
        from i2ckd_mm.evaluation import CLASS_KEY
        append_csv(side_csv(p['csv'], 'classes'), CLASS_FIELDS, [
            dict(base, split='test', **{'class': k[len(CLASS_KEY):]},
                 IoU=f'{v:.2f}') for k, v in test.items()
            if k.startswith(CLASS_KEY)])
        append_csv(side_csv(p['csv'], 'curves'), CURVE_FIELDS, [
            dict(base, iteration=i, mIoU=f'{m:.2f}') for i, m in curve])
    base.update(iterations=iters, wall_s=f'{wall:.0f}')
    append_csv(p['csv'], FIELDS, [
        dict(base, split='val', mIoU=f'{curve[-1][1]:.2f}'),
        dict(base, split='test', mIoU=f"{test['mIoU']:.2f}")])
    return f"val {curve[-1][1]:.2f}, test {test['mIoU']:.2f}"


if __name__ == '__main__':
    print('\n'.join(machine_lines()))

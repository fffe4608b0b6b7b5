"""Plot every loss term and I2CKD diagnostic of an MMEngine log vs iteration.

Reads ``work_dir/<timestamp>/vis_data/scalars.json`` (one JSON object per
line, written by MMEngine's LocalVisBackend) and saves one PNG: the first
panel holds every loss term (keys containing ``loss``, e.g.
``student.decode.loss_ce``, ``student.aux.loss_ce``, ``distill.loss_i2ckd``,
``distill.loss_cwd`` and the total ``loss``), the other panels one
diagnostic each (other ``distill.*`` keys such as ``distill.i2ckd_active``,
``distill.i2ckd_d_pos``, ``distill.i2ckd_d_neg``, and the
``proto_cos_*`` values of PrototypeVisHook), since their scales differ.

Usage::

    python tools/analysis_tools/plot_loss_curves.py WORK_DIR_OR_SCALARS_JSON \
        [--out loss_curves.png] [--keys REGEX ...] [--log-y]

A work dir is searched for its newest ``*/vis_data/scalars.json``.
Only needs matplotlib (Agg canvas, no display).
"""
import argparse
import glob
import json
import math
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

Series = Dict[str, Tuple[List[float], List[float]]]
#: bookkeeping keys that are never plotted
SKIP = {'lr', 'time', 'data_time', 'memory', 'iter', 'epoch', 'step',
        'base_lr', 'momentum'}


def find_scalars(path: str) -> str:
    """``path`` itself if a file, else the newest scalars.json below it."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'no such log file or work dir: {path}')
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json'))
                   + glob.glob(osp.join(path, 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(
            f'no */vis_data/scalars.json under {path}: is it an MMEngine '
            'work dir with the LocalVisBackend enabled?')
    return max(found, key=osp.getmtime)


def is_plotted(key: str) -> bool:
    """Loss terms and distillation / prototype diagnostics."""
    return key not in SKIP and ('loss' in key or key.startswith('distill.')
                                or key.startswith('proto_'))


def load_scalars(path: str,
                 patterns: Optional[Sequence[str]] = None) -> Series:
    """Training series ``{key: (iterations, values)}`` from a scalars.json.

    The x value is a line's ``iter`` (else ``step``); validation lines
    carry no loss or ``distill.*`` key, so they add nothing. With ``patterns``, only keys matching one of the regexes are kept.

    Raises:
        ValueError: On a malformed line, or when no loss key is found.
    """
    series: Series = {}
    n_lines = 0
    seen = set()
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{lineno}: not a JSON line ({e})')
            if not isinstance(rec, dict):
                raise ValueError(f'{path}:{lineno}: expected a JSON object')
            n_lines += 1
            seen.update(rec)
            x = rec.get('iter', rec.get('step'))
            if x is None:
                continue
            for key, value in rec.items():
                if not is_plotted(key) or not isinstance(value, (int, float)):
                    continue
                if patterns and not any(re.search(p, key) for p in patterns):
                    continue
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(x))
                ys.append(float(value))
    if n_lines == 0:
        raise ValueError(f'{path} holds no JSON lines')
    if not any('loss' in k for k in series):
        raise ValueError(
            f'no loss keys in the training lines of {path}' +
            (f' matching {list(patterns)}' if patterns else '') +
            f'; keys seen: {sorted(seen)}')
    return series


def plot(series: Series, out: str, title: str = '',
         log_y: bool = False) -> None:
    """One panel for all losses, one per diagnostic; saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    losses = sorted(k for k in series if 'loss' in k)
    diags = sorted(k for k in series if 'loss' not in k)
    n = 1 + len(diags)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(nrows, ncols, 1)
    for key in losses:
        xs, ys = series[key]
        ax.plot(xs, ys, label=key, lw=1.4 if key == 'loss' else 1.0,
                ls='--' if key == 'loss' else '-')
    if log_y:
        ax.set_yscale('log')
    ax.set_title('loss terms', fontsize=10)
    ax.set_xlabel('iteration')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for i, key in enumerate(diags, 2):
        a = fig.add_subplot(nrows, ncols, i)
        xs, ys = series[key]
        a.plot(xs, ys, color='C3', lw=1.0, marker='.' if len(xs) < 30
               else None)
        a.set_title(key, fontsize=10)
        a.set_xlabel('iteration')
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main(argv: Optional[List[str]] = None) -> str:
    p = argparse.ArgumentParser(
        description='Plot loss terms and I2CKD diagnostics from an MMEngine '
        'scalars.json log')
    p.add_argument('log', help='scalars.json, or a work dir holding one')
    p.add_argument('--out', default='loss_curves.png', help='output PNG')
    p.add_argument('--keys', nargs='+',
                   help='only keys matching one of these regexes')
    p.add_argument('--title', default=None,
                   help='figure title (default: the log path)')
    p.add_argument('--log-y', action='store_true',
                   help='log scale for the loss panel')
    args = p.parse_args(argv)
    try:
        path = find_scalars(args.log)
        series = load_scalars(path, args.keys)
    except (FileNotFoundError, ValueError) as e:
        p.exit(2, f'plot_loss_curves.py: error: {e}\n')
    plot(series, args.out, args.title if args.title is not None else path,
         args.log_y)
    print(f'saved {args.out} ({len(series)} series from {path})')
    return args.out


if __name__ == '__main__':
    sys.exit(0 if main() else 1)

"""Does a bf16 teacher change the distilled student? Paired seeds, ToyShapes.

``I2CKDDistill(teacher_precision='bf16')`` runs the
teacher's forward under a bf16 autocast and hands its features to the losses
in float32. This study trains the toy I2CKD student (the shipped toy config,
``configs/toy/i2ckd_bottleneck_*_toyshapes-64x64.py``) twice per seed, with
the fp32 and the bf16 teacher, from the same seed and the same teacher
checkpoint, and reports the paired difference of the student's mIoU.

What was run::

    python benchmarks/teacher_precision_study.py run --seeds 0 1 2
    python benchmarks/teacher_precision_study.py report

Protocol:

* one ToyShapes dataset (``tools/make_toy_data.py --seed 0``) and one
  teacher (the toy teacher config, seed 0, ``--teacher-iters`` iterations:
  fewer than the config's 1500, to keep the study short on a CPU; the teacher
  only has to be better than the student for distillation to have a
  signal, and both arms share it);
* per seed, the two arms differ only in ``model.teacher_precision``
  (``'fp32'`` / ``'bf16'``): I2CKDDistill builds the student first and keeps
  the teacher off its random numbers, so both start from the same weights,
  see the same batches and draw the same dropout masks;
* val and test mIoU of the final checkpoint (1000 iterations) go to
  ``benchmarks/teacher_precision.csv``; the report (paired Δ = bf16 - fp32,
  95 % t interval of the mean, wins) to ``benchmarks/teacher_precision.md``.
  A run already in the CSV is not repeated;
* one training process at a time, one thread each (the machine is shared).

This script only reads the accuracy study's machinery (``tools/toy``);
``benchmarks/accuracy_study.py`` and its CSV are not touched.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List

import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                         'tools'))  # toy
from toy import (data_options, run_tool, schedule_options,  # noqa: E402
                 toy_configs)
import accuracy_study as study  # noqa: E402  (its CSV and t interval)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CSV = osp.join(ROOT, 'benchmarks', 'teacher_precision.csv')
REPORT = osp.join(ROOT, 'benchmarks', 'teacher_precision.md')
FIELDS = ['dataset', 'split', 'arm', 'seed', 'mIoU', 'iterations', 'wall_s']
DATASET = 'toyshapes'
STUDENT_ITERS = 1000
#: the arms: the teacher's precision (``model.teacher_precision``)
ARMS = ('fp32', 'bf16')


def read_rows(path: str = CSV) -> List[dict]:
    return study.read_rows(path)


def append_rows(rows: List[dict], path: str = CSV) -> None:
    study.append_rows(rows, path)


def done(arm: str, seed: int) -> bool:
    return {'val', 'test'} <= {r['split'] for r in read_rows()
                               if r['arm'] == arm and r['seed'] == seed}


def train_and_evaluate(arm, seed, cfg, run_dir, opts, iters) -> tuple:
    """The accuracy study's train, test and record, into this study's CSV."""
    return study.train_and_evaluate(DATASET, arm, seed, cfg, run_dir, opts,
                                    iters, CSV)


def cmd_run(args) -> None:
    configs = toy_configs(DATASET)
    wd = osp.abspath(args.work_dir)
    data_root = osp.join(wd, 'data')
    if not osp.isdir(osp.join(data_root, 'img_dir', 'test')):
        run_tool('make_toy_data.py', ['--dataset', DATASET, '--out',
                                      data_root, '--seed', '0'])
    teacher_dir = osp.join(wd, 'teacher')
    teacher_ckpt = osp.join(teacher_dir, f'iter_{args.teacher_iters}.pth')
    if not done('teacher', 0):
        os.makedirs(teacher_dir, exist_ok=True)
        val, test = train_and_evaluate(
            'teacher', 0, configs['teacher'], teacher_dir,
            data_options(data_root) + ['randomness.seed=0'] +
            schedule_options(args.teacher_iters), args.teacher_iters)
        print(f'teacher: val {val:.2f}, test {test:.2f}', flush=True)
    for seed in args.seeds:  # seed-major: pairs complete early
        for arm in ARMS:
            if done(arm, seed):
                print(f'{arm} seed {seed}: in the CSV already', flush=True)
                continue
            run_dir = osp.join(wd, 'runs', arm, f'seed{seed}')
            os.makedirs(run_dir, exist_ok=True)
            opts = data_options(data_root) + [
                f'randomness.seed={seed}', f'model.teacher_ckpt={teacher_ckpt}',
                f'model.teacher_precision={arm}'
            ]
            val, test = train_and_evaluate(arm, seed, configs['i2ckd'],
                                           run_dir, opts, STUDENT_ITERS)
            print(f'{arm} seed {seed}: val {val:.2f}, test {test:.2f}',
                  flush=True)


def t_interval(d: List[float]) -> tuple:
    """Mean and 95 % two-sided t interval of the mean of ``d`` (the
    accuracy study's), as ``(mean, lo, hi)``."""
    mean, (lo, hi) = study.t_interval(np.asarray(d, dtype=float))
    return float(mean), float(lo), float(hi)


def cmd_report(args) -> str:
    rows = read_rows()
    by: Dict[tuple, Dict[int, float]] = {}
    for r in rows:
        by.setdefault((r['split'], r['arm']), {})[r['seed']] = r['mIoU']
    lines = [
        '# A bf16 teacher vs the fp32 teacher: the distilled student', '',
        'Generated by `python benchmarks/teacher_precision_study.py report` '
        f'from `benchmarks/teacher_precision.csv` ({len(rows)} rows). '
        'ToyShapes 64x64 (6 classes, 300 train / 60 val / 200 test images), '
        'the toy I2CKD config (DeepLabV3 R18-D8 1/2-width teacher -> '
        '1/4-width student, I2CKD on the ASPP bottleneck, 1000 iterations, '
        'CPU, one thread); the arms differ only in '
        '`model.teacher_precision`. Δ = bf16 - fp32, paired by seed (same '
        'student start, batches and dropout masks, same teacher '
        'checkpoint); 95 % CI = t interval of the mean Δ; "tied" where it '
        'contains zero.', '',
    ]
    teacher = {r['split']: r for r in rows if r['arm'] == 'teacher'}
    if teacher:
        t = next(iter(teacher.values()))
        lines += [f'Teacher (seed 0, {t["iterations"]} iterations): test '
                  f'{teacher["test"]["mIoU"]:.2f}, val '
                  f'{teacher["val"]["mIoU"]:.2f} mIoU.', '']
    lines += ['| split | seeds | fp32 teacher mIoU (mean) | bf16 teacher '
              'mIoU (mean) | mean Δ | 95 % CI | bf16 better | verdict |',
              '|---|---|---:|---:|---:|---|---:|---|']
    verdicts = {}
    for split in ('test', 'val'):
        a, b = by.get((split, 'bf16'), {}), by.get((split, 'fp32'), {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        d = [a[s] - b[s] for s in seeds]
        mean, lo, hi = t_interval(d)
        verdict = {'improves': 'bf16 better', 'worse': 'bf16 worse',
                   'tied': 'tied'}[study.verdict(lo, hi)]
        verdicts[split] = verdict
        lines.append(
            f'| {split} | {", ".join(map(str, seeds))} | '
            f'{statistics.fmean(b[s] for s in seeds):.2f} | '
            f'{statistics.fmean(a[s] for s in seeds):.2f} | {mean:+.2f} | '
            f'[{lo:+.2f}, {hi:+.2f}] | {sum(x > 0 for x in d)}/{len(d)} | '
            f'{verdict} |')
    test_d = [by[('test', 'bf16')][s] - by[('test', 'fp32')][s]
              for s in sorted(set(by.get(('test', 'bf16'), {})) &
                              set(by.get(('test', 'fp32'), {})))]
    if len(test_d) >= 2:
        mean, lo, hi = t_interval(test_d)
        lines += ['', f'With {len(test_d)} seeds the test interval is '
                  f'±{(hi - lo) / 2:.2f} mIoU wide: an effect of the '
                  "teacher's precision smaller than that would not show "
                  'here.']
    lines += ['', 'Per seed (test / val mIoU):', '',
              '| seed | fp32 teacher | bf16 teacher | Δ test | training '
              's fp32 / bf16 |', '|---:|---:|---:|---:|---:|']
    walls = {(r['arm'], r['seed']): r['wall_s'] for r in rows}
    for s in sorted(set(by.get(('test', 'fp32'), {})) |
                    set(by.get(('test', 'bf16'), {}))):
        cells = []
        for arm in ARMS:
            cells.append(f'{by.get(("test", arm), {}).get(s, float("nan")):.2f}'
                         f' / {by.get(("val", arm), {}).get(s, float("nan")):.2f}')
        dt = (by.get(('test', 'bf16'), {}).get(s, float('nan')) -
              by.get(('test', 'fp32'), {}).get(s, float('nan')))
        lines.append(f'| {s} | {cells[0]} | {cells[1]} | {dt:+.2f} | '
                     f'{walls.get(("fp32", s), "-")} / '
                     f'{walls.get(("bf16", s), "-")} |')
    lines += ['', 'Training seconds are wall time on a shared 2-core machine '
              '(other jobs running): not a speed measurement; '
              '`benchmarks/bench_distill_step.py` times the teacher.', '']
    text = '\n'.join(lines)
    print(text)
    with open(REPORT, 'w') as f:
        f.write(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run', help='train the missing runs')
    r.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    r.add_argument('--teacher-iters', type=int, default=1000)
    r.add_argument('--work-dir', default='work_dirs/teacher_precision')
    sub.add_parser('report', help='write benchmarks/teacher_precision.md')
    args = p.parse_args(argv)
    if args.cmd == 'run':
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == '__main__':
    sys.exit(main())

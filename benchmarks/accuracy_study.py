"""Paired-seed accuracy study of I2CKD on the ToyShapes CPU task (issue 5).

    # 1. pilot: choose the I2CKD variant on a held-out seed (not a study seed)
    python benchmarks/accuracy_study.py run --arms pilot --seeds 100
    # 2. study: every arm on the same seeds
    python benchmarks/accuracy_study.py run --arms study --seeds 0 1 2
    # 3. table, paired differences, diagnostics and a bar chart
    python benchmarks/accuracy_study.py report --out benchmarks/accuracy_study.md \
        --plot docs/images/accuracy_study.png

Every arm trains the same student (configs/toy, DeepLabV3 ResNetV1c-18 at 1/4
width) for the same iterations from the same seed, so arms differ only in
their distillation losses; one teacher (trained once, seed 0) serves all arms.
Runs are resumable: a run whose final mIoU is on disk is not repeated. Each
run uses one thread; ``--jobs`` runs several at once.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from i2ckd_mm.toy import toy_configs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
_TOY = toy_configs()
TEACHER_CFG, STUDENT_CFG = _TOY['teacher'], _TOY['student']
I2CKD_CFG, I2CKD_CWD_CFG = _TOY['i2ckd'], _TOY['i2ckd_cwd']


def _i2ckd(**opts):
    """Config text overriding I2CKDLoss options."""
    return ('model = dict(distiller=dict(distill_losses=dict('
            f'loss_i2ckd=dict({", ".join(f"{k}={v!r}" for k, v in opts.items())}))))\n')


def _warmup(iters, loss='loss_i2ckd'):
    return ("custom_hooks = [dict(type='mmrazor.DistillLossWeightScheduleHook',"
            f" losses=dict({loss}=dict(warmup_iters={iters})))]\n")


# Every arm states all the loss options it studies, so the arms stay the
# same whatever the shipped configs choose as their default.
# The literal method (I2CKD_METHOD.md): Euclidean distances, margin 1.
LITERAL = dict(normalize=False, margin=1.0, pull_weight=0.0)
# L2-normalised prototypes, a margin that is meaningful on the unit sphere,
# and an explicit intra-class pull (the pilot's suggested fixes).
NORM_PULL = dict(normalize=True, margin=0.2, pull_weight=1.0)
CWD_ONLY = ("model = dict(distiller=dict(distill_losses=dict("
            "loss_i2ckd=dict(loss_weight=0.0))))\n")

LAYER4 = ("model = dict(distiller=dict("
          "student_recorders=dict(feat=dict(source='backbone.layer4')),"
          "teacher_recorders=dict(feat=dict(source='backbone.layer4')),"
          "connectors=dict(loss_i2ckd_sfeat=dict("
          "in_channels=128, out_channels=256))))\n")

#: arm -> (base config, extra config text)
ARMS = {
    'student': (STUDENT_CFG, ''),
    'i2ckd': (I2CKD_CFG, _i2ckd(**LITERAL)),
    'i2ckd_warmup': (I2CKD_CFG, _i2ckd(**LITERAL) + _warmup(200)),
    'i2ckd_normpull': (I2CKD_CFG, _i2ckd(**NORM_PULL)),
    'i2ckd_normpull_warmup': (I2CKD_CFG, _i2ckd(**NORM_PULL) + _warmup(200)),
    'i2ckd_pull': (I2CKD_CFG, _i2ckd(**dict(LITERAL, pull_weight=0.1))),
    'cwd': (I2CKD_CWD_CFG, CWD_ONLY),
    # feature location: last backbone stage instead of the ASPP bottleneck
    'i2ckd_normpull_layer4': (I2CKD_CFG, _i2ckd(**NORM_PULL) + LAYER4),
}
GROUPS = {
    'pilot': ['i2ckd', 'i2ckd_warmup', 'i2ckd_normpull',
              'i2ckd_normpull_warmup', 'i2ckd_pull'],
    'study': ['student', 'i2ckd', 'BEST', 'cwd', 'BEST+cwd'],
}


def arm_spec(name, best):
    """(base config, extra text) of an arm; BEST resolves to ``best``."""
    name = name.replace('BEST', best)
    if name.endswith('+cwd'):
        base, extra = ARMS[name[:-len('+cwd')]]
        if base != I2CKD_CFG:
            raise ValueError(f'{name}: +cwd needs an I2CKD arm')
        return name, I2CKD_CWD_CFG, extra
    if name not in ARMS:
        raise KeyError(f'unknown arm {name!r}; known: {sorted(ARMS)}')
    return (name, ) + ARMS[name]


def data_options(data_root):
    return [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]


def final_miou(run_dir):
    """Last mIoU in the run's MMEngine scalars log, or None."""
    logs = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                     'scalars.json')))
    for log in reversed(logs):
        with open(log) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        miou = [r['mIoU'] for r in rows if 'mIoU' in r]
        if miou:
            return float(miou[-1]), rows
    return None, []


def train(cfg, work_dir, options, log_file):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg,
           '--work-dir', work_dir, '--cfg-options'] + options
    with open(log_file, 'w') as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env=env, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f'training failed ({proc.returncode}): {log_file}')


def ensure_data_and_teacher(wd):
    data_root = osp.join(wd, 'data')
    if not osp.isdir(osp.join(data_root, 'img_dir')):
        subprocess.run([sys.executable, osp.join(ROOT, 'tools',
                                                 'make_toy_data.py'),
                        '--out', data_root, '--seed', '0'], check=True,
                       cwd=ROOT)
    teacher_dir = osp.join(wd, 'teacher')
    ckpt = osp.join(teacher_dir, 'iter_1500.pth')
    if not osp.isfile(ckpt):
        os.makedirs(teacher_dir, exist_ok=True)
        train(TEACHER_CFG, teacher_dir, data_options(data_root) +
              ['randomness.seed=0'], osp.join(teacher_dir, 'train.log'))
    return data_root, ckpt


def run_one(wd, data_root, teacher_ckpt, arm, base, extra, seed):
    run_dir = osp.join(wd, 'runs', arm, f'seed{seed}')
    if final_miou(run_dir)[0] is not None:
        return arm, seed, 'cached'
    os.makedirs(run_dir, exist_ok=True)
    cfg = osp.join(run_dir, 'config.py')
    with open(cfg, 'w') as f:
        f.write(f'_base_ = [{base!r}]\n{extra}')
    opts = data_options(data_root) + [f'randomness.seed={seed}']
    if base != STUDENT_CFG:
        opts.append(f'model.teacher_ckpt={teacher_ckpt}')
    t0 = time.time()
    train(cfg, run_dir, opts, osp.join(run_dir, 'train.log'))
    return arm, seed, f'{time.time() - t0:.0f} s'


def cmd_run(args):
    wd = osp.abspath(args.work_dir)
    data_root, teacher_ckpt = ensure_data_and_teacher(wd)
    names = []
    for a in args.arms:
        names += GROUPS.get(a, [a])
    specs = [arm_spec(n, args.best) for n in names]
    jobs = [(s, seed) for s in specs for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_one, wd, data_root, teacher_ckpt, *spec, seed)
            for spec, seed in jobs
        ]
        for fut in futures:
            arm, seed, status = fut.result()
            print(f'{arm:28s} seed {seed}: {status}', flush=True)


def _series(rows, key):
    return [(r['iter'], r[key]) for r in rows if key in r and 'iter' in r]


def _at(series, frac):
    if not series:
        return float('nan')
    last = series[-1][0]
    return min(series, key=lambda p: abs(p[0] - frac * last))[1]


def cmd_report(args):
    wd = osp.abspath(args.work_dir)
    results, diags = {}, {}
    for arm_dir in sorted(glob.glob(osp.join(wd, 'runs', '*'))):
        arm = osp.basename(arm_dir)
        for run_dir in sorted(glob.glob(osp.join(arm_dir, 'seed*'))):
            seed = int(osp.basename(run_dir)[4:])
            if args.seeds and seed not in args.seeds:
                continue
            miou, rows = final_miou(run_dir)
            if miou is None:
                continue
            results.setdefault(arm, {})[seed] = miou
            diags.setdefault(arm, {})[seed] = rows
    # weakest arm first: the table and the chart read as a ladder
    results = dict(
        sorted(results.items(), key=lambda kv: np.mean(list(kv[1].values()))))
    teacher, _ = final_miou(osp.join(wd, 'teacher'))
    lines = ['# I2CKD accuracy study on ToyShapes (CPU)', '']
    lines.append(f'Teacher (DeepLabV3 ResNetV1c-18 at 1/2 width, 1500 it, '
                 f'seed 0): **{teacher:.2f} mIoU**.' if teacher else
                 'Teacher: no result.')
    lines += ['', '| arm | seeds | val mIoU (mean ± std) | per seed |',
              '|---|---|---|---|']
    for arm, by_seed in results.items():
        v = np.array(list(by_seed.values()))
        per = ', '.join(f'{s}: {m:.2f}' for s, m in sorted(by_seed.items()))
        std = v.std(ddof=1) if len(v) > 1 else float('nan')
        lines.append(f'| {arm} | {len(v)} | {v.mean():.2f} ± {std:.2f} | '
                     f'{per} |')
    pairs = [(a, 'student') for a in results if a != 'student']
    pairs += [(a, 'cwd') for a in results if a.endswith('+cwd')]
    lines += ['', 'Paired differences (same seed), mean ± std over seeds:',
              '', '| arm | vs | Δ mIoU | per seed | wins |', '|---|---|---|---|---|']
    for a, b in pairs:
        if b not in results:
            continue
        common = sorted(set(results[a]) & set(results[b]))
        if not common:
            continue
        d = np.array([results[a][s] - results[b][s] for s in common])
        std = d.std(ddof=1) if len(d) > 1 else float('nan')
        lines.append(f'| {a} | {b} | {d.mean():+.2f} ± {std:.2f} | ' +
                     ', '.join(f'{x:+.2f}' for x in d) +
                     f' | {(d > 0).sum()}/{len(d)} |')
    lines += ['', 'I2CKD diagnostics logged by the loss during training '
              '(mean over seeds; at 10 % / 50 % / 100 % of training):', '',
              '| arm | active triplets | d(Ps_k, Pt_k) | d(Ps_k, Pt_j) | '
              'i2ckd share of total loss |', '|---|---|---|---|---|']
    for arm, by_seed in diags.items():
        if not _series(next(iter(by_seed.values())), 'distill.i2ckd_active'):
            continue  # no I2CKD term in this arm
        cells = []
        for key in ('distill.i2ckd_active', 'distill.i2ckd_d_pos',
                    'distill.i2ckd_d_neg'):
            vals = np.array([[_at(_series(rows, key), f) for f in
                              (0.1, 0.5, 1.0)] for rows in by_seed.values()])
            cells.append(' / '.join(f'{x:.2f}' for x in vals.mean(0)))
        share = np.array([[
            _at(_series(rows, 'distill.loss_i2ckd'), f) /
            max(_at(_series(rows, 'loss'), f), 1e-12) for f in (0.1, 0.5, 1.0)
        ] for rows in by_seed.values()]).mean(0)
        cells.append(' / '.join(f'{x:.2f}' for x in share))
        if not share.any():  # e.g. the cwd arm: I2CKD logged at weight 0
            arm += ' (I2CKD weight 0: reference only)'
        lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    if args.plot:
        plot(results, teacher, args.plot)


def plot(results, teacher, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    arms = list(results)
    means = [np.mean(list(results[a].values())) for a in arms]
    stds = [np.std(list(results[a].values()), ddof=1)
            if len(results[a]) > 1 else 0 for a in arms]
    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 2, 3.6), dpi=110)
    ax.bar(arms, means, yerr=stds, capsize=4, color='#4c72b0')
    for i, a in enumerate(arms):
        ax.scatter([i] * len(results[a]), list(results[a].values()),
                   color='k', s=10, zorder=3)
    if teacher:
        ax.axhline(teacher, color='#c44e52', ls='--', label='teacher')
        ax.legend(loc='lower right')
    ax.set_ylabel('val mIoU (%)')
    ax.set_title('ToyShapes: student arms, mean ± std over paired seeds')
    lo = min(min(v.values()) for v in results.values())
    ax.set_ylim(max(0, lo - 10), max(means + [teacher or 0]) + 5)
    plt.setp(ax.get_xticklabels(), rotation=20, ha='right')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('--work-dir', default='work_dirs/accuracy_study')
    r.add_argument('--arms', nargs='+', default=['study'],
                   help=f'arm names or groups {sorted(GROUPS)}; arms: '
                   f'{sorted(ARMS)} (+cwd suffix adds CWD)')
    r.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    r.add_argument('--best', default='i2ckd_normpull',
                   help='the I2CKD arm the study group calls BEST')
    r.add_argument('--jobs', type=int, default=2)
    q = sub.add_parser('report')
    q.add_argument('--work-dir', default='work_dirs/accuracy_study')
    q.add_argument('--seeds', nargs='+', type=int,
                   help='only these seeds (default: all on disk)')
    q.add_argument('--out')
    q.add_argument('--plot')
    args = p.parse_args(argv)
    cmd_run(args) if args.cmd == 'run' else cmd_report(args)


if __name__ == '__main__':
    main()

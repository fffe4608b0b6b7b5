"""Paired-seed accuracy study of I2CKD on two toy CPU proxies (issue 10).

What was run (each command resumes: runs already in the CSV are skipped):

    # 1. choose on ToyShapes val, stage 1: every I2CKD variant on top of
    #    CWD, seeds 0-1
    python benchmarks/accuracy_study.py run --dataset toyshapes \
        --arms explore --seeds 0 1
    #    stage 2: the 3 best by mean val delta vs CWD, seed 2 as well
    #    (the report names them and the chosen one)
    python benchmarks/accuracy_study.py run --dataset toyshapes \
        --arms np_2loc+cwd np_sym+cwd np_warmup+cwd --seeds 2
    # 2. report on test, both datasets, 5 seeds: student alone, CWD alone,
    #    the chosen variant + CWD and alone, the shipped I2CKD variant alone
    #    (np), the literal loss, and the variant the first round of this
    #    study chose (np_w3_batch+cwd)
    python benchmarks/accuracy_study.py run --dataset toyshapes \
        --arms student np cwd np_2loc+cwd np_2loc literal np_w3_batch+cwd \
        --seeds 0 1 2 3 4
    python benchmarks/accuracy_study.py run --dataset toystreets \
        --arms student np cwd np_2loc+cwd np_2loc literal np_w3_batch+cwd \
        --seeds 0 1 2 3 4
    # 2b. round 3 (after round 2's test results were seen): three changes
    #    of the chosen variant on ToyShapes val, seeds 0-2; the best by
    #    mean val delta vs CWD (np_2loc_stop+cwd) to test on both datasets
    python benchmarks/accuracy_study.py run --dataset toyshapes \
        --arms round3 --seeds 0 1 2
    python benchmarks/accuracy_study.py run --dataset toyshapes \
        --arms np_2loc_stop+cwd --seeds 3 4
    python benchmarks/accuracy_study.py run --dataset toystreets \
        --arms np_2loc_stop+cwd --seeds 0 1 2 3 4
    # 4. round 4 (issue 16): pretrained backbones (ToyNet classification,
    #    pretrained on the first call), teacher 1500 iterations, fresh
    #    splits (generator seed 16), students 400 iterations, 5 seeds;
    #    rows in accuracy_study_pretrained*.csv
    python benchmarks/accuracy_study.py run --protocol pretrained \
        --dataset toyshapes --arms teacher round4 --seeds 0 1 2 3 4
    python benchmarks/accuracy_study.py run --protocol pretrained \
        --dataset toystreets --arms teacher round4 --seeds 0 1 2 3 4
    #    the same on one GPU (ToyStreets 256x512, R50 -> R18): gpu_study.sh
    # 3. tables (paired differences, 95 % t intervals, wins) and the chart,
    #    generated from the committed CSV (and round 4's section and curves
    #    from its CSV files)
    python benchmarks/accuracy_study.py report

Protocol:

* Every arm trains the same student config for the same iterations from the
  same seed; I2CKDDistill builds and initialises the student first and keeps
  the teacher and connectors off its random numbers, so with the same seed
  the distilled student starts from the same weights, sees the same batches
  and draws the same dropout masks as the student alone. Arms differ only in
  their distillation losses. One teacher per dataset (seed 0) serves all arms.
* Choices (which I2CKD variant, its weight) are made on the **val** split;
  the reported numbers are on the **test** split, which no choice looked at.
* Every finished run appends its val and test mIoU, iterations and wall time
  to ``benchmarks/accuracy_study.csv``; the report and chart are generated
  from that file only. A run already in the CSV is not repeated (resume after
  an interruption: run the same command again).
* Each run uses one thread; ``--jobs`` runs several at once.
"""
import argparse
import csv
import os
import os.path as osp
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.append(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                         'tools'))  # toy
from toy import (data_options, last_metrics, run_tool,  # noqa: E402
                 schedule_options, split_options, toy_configs)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CSV = osp.join(ROOT, 'benchmarks', 'accuracy_study.csv')
FIELDS = ['dataset', 'split', 'arm', 'seed', 'mIoU', 'iterations', 'wall_s']
STUDENT_ITERS, TEACHER_ITERS = 1000, 1500


def _py(obj):
    """Config text of a value: dicts as ``dict(key=value, ...)``."""
    if isinstance(obj, dict):
        return 'dict(' + ', '.join(f'{k}={_py(v)}' for k, v in obj.items()) \
            + ')'
    return repr(obj)


def _merged(a: dict, b: dict) -> dict:
    """``a`` updated with ``b``, nested dicts merged key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = (_merged(out[k], v) if isinstance(v, dict)
                  and isinstance(out.get(k), dict) else v)
    return out


def _i2ckd(extra_distiller=None, **opts):
    """Config text overriding I2CKDLoss options (and adding distiller
    entries, e.g. a second location), as one ``model`` assignment."""
    distiller = dict(distill_losses=dict(loss_i2ckd=opts))
    if extra_distiller:
        distiller = _merged(distiller, extra_distiller)
    return f'model = dict(distiller={_py(distiller)})\n'


def _schedule(**losses):
    """Config text scheduling loss weights with DistillLossWeightScheduleHook,
    e.g. ``_schedule(loss_i2ckd=dict(warmup_iters=200))``."""
    return ("custom_hooks = [dict(type='mmrazor.DistillLossWeightScheduleHook',"
            f" losses={_py(losses)})]\n")


def _warmup(iters, loss='loss_i2ckd'):
    return _schedule(**{loss: dict(warmup_iters=iters)})


def second_location(in_channel=128, out_channel=256):
    """The shipped second-location block (configs/_base_/i2ckd/
    i2ckd_layer4.py, one source for the configs and this study) with the
    toy students' layer4 channels: 128 at 1/4 width -> 256 in the teacher."""
    from mmengine.config import Config
    block = Config.fromfile(osp.join(
        ROOT, 'configs', '_base_', 'i2ckd',
        'i2ckd_layer4.py'))['i2ckd_layer4'].to_dict()
    block['connectors']['loss_i2ckd4_sfeat'].update(
        in_channel=in_channel, out_channel=out_channel)
    return block


# Every arm states all the loss options it studies, so the arms stay the
# same whatever the shipped configs choose as their defaults.
# Our reading of the paper (docs/method.md): Euclidean distances, margin 1.
LITERAL = dict(normalize=False, margin=1.0, pull_weight=0.0)
# L2-normalised prototypes, a margin meaningful on the unit sphere, and an
# explicit intra-class pull (the variant shipped before this study).
NP = dict(normalize=True, margin=0.2, pull_weight=1.0)

#: I2CKD variant -> extra config text (on the I2CKD / I2CKD+CWD configs).
VARIANTS = {
    'literal': _i2ckd(**LITERAL),
    'np': _i2ckd(**NP),
    'np_w3': _i2ckd(**NP, loss_weight=3.0),
    'np_batch': _i2ckd(**NP, prototype_scope='batch'),
    'np_w3_batch': _i2ckd(**NP, loss_weight=3.0, prototype_scope='batch'),
    'np_hardest': _i2ckd(**NP, negatives='hardest'),
    'np_sym': _i2ckd(**NP, symmetric=True),
    'np_warmup': _i2ckd(**NP) + _warmup(200),
    'np_2loc': _i2ckd(second_location(), **NP),
    # + the pixel-to-prototype KL (pixel_tau 0.1), at weight 1 / 3
    'np_pix': _i2ckd(**NP, pixel_weight=1.0),
    'np_pix3': _i2ckd(**NP, pixel_weight=3.0),
    # the student pixels against the teacher's prototypes
    'np_pixT': _i2ckd(**NP, pixel_weight=1.0, pixel_prototypes='teacher'),
    # round 3 (designed after round 2's test results were seen; chosen on
    # val again): the two-location variant with both I2CKD terms switched
    # off at half of training (early guidance, then logit KD alone) ...
    'np_2loc_stop': _i2ckd(second_location(), **NP) + _schedule(
        loss_i2ckd=dict(stop_iter=STUDENT_ITERS // 2),
        loss_i2ckd4=dict(stop_iter=STUDENT_ITERS // 2)),
    # ... at half weight for both terms ...
    'np_2loc_w05': _i2ckd(_merged(second_location(), dict(
        distill_losses=dict(loss_i2ckd4=dict(loss_weight=0.5)))),
        **NP, loss_weight=0.5),
    # ... and on the last backbone stage only (the bottleneck term at
    # weight 0: computed for its diagnostics, no gradient)
    'np_l4': _i2ckd(second_location(), **NP, loss_weight=0.0),
}
# CWD alone: the I2CKD+CWD config with the I2CKD term at weight 0 (its
# diagnostics are still logged, as a reference).
CWD_ONLY = _i2ckd(loss_weight=0.0)

GROUPS = {
    # choose on ToyShapes val: what adds most on top of CWD
    'explore': ['cwd', 'np+cwd', 'np_w3+cwd', 'np_batch+cwd',
                'np_w3_batch+cwd', 'np_hardest+cwd', 'np_sym+cwd',
                'np_warmup+cwd', 'np_2loc+cwd', 'np_pix+cwd', 'np_pix3+cwd',
                'np_pixT+cwd'],
    # report on test; BEST = --best, np_2loc by default (the choice on val)
    'final': ['student', 'np', 'cwd', 'BEST+cwd', 'BEST', 'literal'],
    # round 3 on ToyShapes val, seeds 0-2, against np_2loc+cwd (round 2's
    # choice) and cwd
    'round3': ['np_2loc_stop+cwd', 'np_2loc_w05+cwd', 'np_l4+cwd'],
    # round 4 (--protocol pretrained / gpu): pretrained starts, fresh
    # splits; the shipped I2CKD alone and the recommended I2CKD + CWD
    # (two locations)
    'round4': ['student', 'cwd', 'np', 'np_2loc+cwd'],
}


def arm_spec(name, configs):
    """(config role path, extra config text) of an arm."""
    if name == 'student':
        return configs['student'], ''
    if name == 'cwd':
        return configs['i2ckd_cwd'], CWD_ONLY
    variant, cwd = (name[:-4], True) if name.endswith('+cwd') else (name,
                                                                      False)
    if variant not in VARIANTS:
        raise KeyError(f'unknown arm {name!r}; variants: {sorted(VARIANTS)} '
                       "(+cwd adds CWD), 'student', 'cwd'")
    return configs['i2ckd_cwd' if cwd else 'i2ckd'], VARIANTS[variant]


# ---------------------------------------------------------------- results
_LOCK = threading.Lock()


def read_rows(path=None):
    return read_side(path or CSV, 'mIoU')


def append_rows(rows, path=None):
    _append(path or CSV, FIELDS, rows)


def done(dataset, arm, seed):
    splits = {r['split'] for r in read_rows() if r['dataset'] == dataset
              and r['arm'] == arm and r['seed'] == seed}
    return {'val', 'test'} <= splits


# ------------------------------------------------------------------- runs
def evaluate_test(cfg, ckpt, run_dir, opts):
    test_dir = osp.join(run_dir, 'test')
    run_tool('test.py', [cfg, ckpt, '--work-dir', test_dir, '--cfg-options'] +
             opts + split_options('test'),
             log_file=osp.join(run_dir, 'test.log'))
    return float(last_metrics(test_dir)['mIoU'])


def training_seconds(run_dir, ckpt):
    """Wall time of the training run: from the start time in the name of
    MMEngine's log folder (``YYYYmmdd_HHMMSS``) to the final checkpoint.
    Read from the files, so it holds for a run finished by an interrupted
    study process too."""
    starts = []
    for name in os.listdir(run_dir):
        try:
            starts.append(time.mktime(time.strptime(name, '%Y%m%d_%H%M%S')))
        except ValueError:
            continue
    if not starts:
        raise RuntimeError(f'no MMEngine log folder under {run_dir}')
    return osp.getmtime(ckpt) - min(starts)


def train_and_evaluate(dataset, arm, seed, cfg, run_dir, opts, iters,
                       path=None):
    """Train (val mIoU at the end), test the final checkpoint, record (in
    ``path``, default the study's CSV)."""
    ckpt = osp.join(run_dir, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        run_tool('train.py', [cfg, '--work-dir', run_dir, '--cfg-options'] +
                 opts, log_file=osp.join(run_dir, 'train.log'))
    wall = training_seconds(run_dir, ckpt)
    val = last_metrics(run_dir)
    if val is None:
        raise RuntimeError(f'no val mIoU under {run_dir}')
    test = evaluate_test(cfg, ckpt, run_dir, opts)
    base = dict(dataset=dataset, arm=arm, seed=seed, iterations=iters,
                wall_s=f'{wall:.0f}')
    append_rows([dict(base, split='val', mIoU=f"{val['mIoU']:.2f}"),
                 dict(base, split='test', mIoU=f'{test:.2f}')], path)
    return val['mIoU'], test


def ensure_data_and_teacher(wd, dataset, configs):
    data_root = osp.join(wd, 'data')
    if not osp.isdir(osp.join(data_root, 'img_dir', 'test')):
        run_tool('make_toy_data.py', ['--dataset', dataset, '--out',
                                      data_root, '--seed', '0'])
    teacher_dir = osp.join(wd, 'teacher')
    ckpt = osp.join(teacher_dir, f'iter_{TEACHER_ITERS}.pth')
    if not done(dataset, 'teacher', 0):
        os.makedirs(teacher_dir, exist_ok=True)
        train_and_evaluate(dataset, 'teacher', 0, configs['teacher'],
                           teacher_dir, data_options(data_root) +
                           ['randomness.seed=0'], TEACHER_ITERS)
    return data_root, ckpt


def run_one(wd, dataset, data_root, teacher_ckpt, arm, cfg, extra, seed):
    if done(dataset, arm, seed):
        return arm, seed, 'in the CSV already'
    run_dir = osp.join(wd, 'runs', arm, f'seed{seed}')
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = osp.join(run_dir, 'config.py')
    with open(cfg_path, 'w') as f:
        f.write(f'_base_ = [{cfg!r}]\n{extra}')
    opts = data_options(data_root) + [f'randomness.seed={seed}']
    if arm != 'student':
        opts.append(f'model.teacher_ckpt={teacher_ckpt}')
    val, test = train_and_evaluate(dataset, arm, seed, cfg_path, run_dir,
                                   opts, STUDENT_ITERS)
    return arm, seed, f'val {val:.2f}, test {test:.2f}'


def cmd_run(args):
    configs = toy_configs(args.dataset)
    wd = osp.abspath(osp.join(args.work_dir, args.dataset))
    data_root, teacher_ckpt = ensure_data_and_teacher(wd, args.dataset,
                                                      configs)
    names = []
    for a in args.arms:
        names += [n.replace('BEST', args.best) for n in GROUPS.get(a, [a])]
    names = list(dict.fromkeys(names))
    # seed-major: paired comparisons become available early
    jobs = [(n, s) for s in args.seeds for n in names]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_one, wd, args.dataset, data_root, teacher_ckpt,
                        n, *arm_spec(n, configs), s) for n, s in jobs
        ]
        for fut in futures:
            arm, seed, status = fut.result()
            print(f'{args.dataset} {arm:24s} seed {seed}: {status}',
                  flush=True)


# ----------------------------------------------------------------- report
def paired(results, a, b):
    """Paired differences a - b over the seeds both have: (seeds, diffs)."""
    common = sorted(set(results.get(a, {})) & set(results.get(b, {})))
    return common, np.array([results[a][s] - results[b][s] for s in common])


def t_interval(d):
    """Mean and 95 % two-sided t confidence interval of the mean of d."""
    from scipy import stats
    n = len(d)
    if n < 2:
        return d.mean() if n else float('nan'), (float('nan'),) * 2
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
    return d.mean(), (d.mean() - half, d.mean() + half)


def verdict(lo, hi):
    if lo > 0:
        return 'improves'
    if hi < 0:
        return 'worse'
    return 'tied'


def comparison_table(results, pairs):
    lines = ['| arm | vs | seeds | mean Δ mIoU | 95 % CI | wins | verdict |',
             '|---|---|---|---|---|---|---|']
    for a, b in pairs:
        seeds, d = paired(results, a, b)
        if len(d) == 0:
            continue
        m, (lo, hi) = t_interval(d)
        ci = f'[{lo:+.2f}, {hi:+.2f}]' if len(d) > 1 else 'n/a'
        lines.append(f'| {a} | {b} | {len(d)} | {m:+.2f} | {ci} | '
                     f'{(d > 0).sum()}/{len(d)} | {verdict(lo, hi)} |')
    return lines


def arm_table(results, split):
    lines = [f'| arm | seeds | {split} mIoU mean ± std | per seed |',
             '|---|---|---|---|']
    for arm, by_seed in sorted(results.items(),
                               key=lambda kv: np.mean(list(kv[1].values()))):
        v = np.array(list(by_seed.values()))
        std = v.std(ddof=1) if len(v) > 1 else float('nan')
        per = ', '.join(f'{s}: {m:.2f}' for s, m in sorted(by_seed.items()))
        lines.append(f'| {arm} | {len(v)} | {v.mean():.2f} ± {std:.2f} | '
                     f'{per} |')
    return lines


def collect(rows, dataset, split):
    out = {}
    for r in rows:
        if r['dataset'] == dataset and r['split'] == split \
                and r['arm'] != 'teacher':
            out.setdefault(r['arm'], {})[r['seed']] = r['mIoU']
    return out


def on_seeds(results, arms, seeds):
    """``results`` of ``arms`` (arm -> seed -> mIoU) kept to ``seeds``."""
    return {a: {s: v for s, v in results[a].items() if s in seeds}
            for a in arms}


def _mean_delta(results, arm, seeds):
    return paired(on_seeds(results, (arm, 'cwd'), seeds), arm,
                  'cwd')[1].mean()


def ranked_on_val(val, arms, seeds):
    """``arms`` sorted by mean val Δ vs CWD on ``seeds``, with their
    comparison table; ``(None, missing)`` when some of them (or CWD) lack
    one of the seeds."""
    missing = [a for a in arms + ['cwd']
               if not set(seeds) <= set(val.get(a, {}))]
    if missing:
        return None, missing
    ranked = sorted(arms, key=lambda a: -_mean_delta(val, a, seeds))
    return ranked, comparison_table(on_seeds(val, ranked + ['cwd'], seeds),
                                    [(a, 'cwd') for a in ranked])


def choice_section(val, explored, args):
    """The two-stage choice on val: every variant + CWD on the first seeds,
    the ``--top`` best by mean Δ vs CWD on the second-stage seeds too; the
    best of those by mean Δ is the chosen variant."""
    first, second = args.choice_seeds, args.second_stage_seeds
    ranked = sorted(explored, key=lambda a: -_mean_delta(val, a, first))
    top = ranked[:args.top]
    lines = ['### Choice on val: I2CKD variants on top of CWD', '',
             f'Stage 1: every variant on seeds {", ".join(map(str, first))}'
             f' (sorted by mean Δ). Stage 2: the {args.top} best on seeds '
             f'{", ".join(map(str, second))}; the one with the highest mean'
             ' Δ there was taken to test.', '']
    sub = on_seeds(val, ranked + ['cwd'], first)
    deltas = np.concatenate([paired(sub, a, 'cwd')[1] for a in ranked])
    lines[-2] += (f' With 60 val images one seed\'s val Δ has a standard '
                  f'deviation of {deltas.std(ddof=1):.2f} mIoU across all '
                  'stage-1 runs, so this choice is weak evidence.')
    lines += comparison_table(sub, [(a, 'cwd') for a in ranked]) + ['']
    top, table = ranked_on_val(val, top, second)
    if top is None:
        lines += [f'Stage 2 incomplete: no val result on every seed of '
                  f'{second} for {", ".join(table)}.', '']
    else:
        lines += [f'Stage 2 (seeds {", ".join(map(str, second))}); chosen: '
                  f'`{top[0]}`.', ''] + table + ['']
    return lines


def round3_section(val, args):
    """Round 3 on val: the round-3 variants and round 2's choice (on top of
    CWD), compared on the same seeds; the highest mean Δ goes to test."""
    arms = [f'{args.best}+cwd'] + GROUPS['round3']
    seeds = args.round3_seeds
    lines = ['### Round 3 on val: designed after round 2\'s test results were '
             'seen', '',
             'Round 2 (above) chose `' + args.best + '+cwd` on val; its test '
             'numbers were then seen, so the test split has now been looked '
             'at twice. Round 3 tried three changes of that variant, again '
             'chosen on val only (seeds ' + ', '.join(map(str, seeds)) +
             ', against round 2\'s choice on the same seeds): both I2CKD '
             'terms switched off at half of training (`np_2loc_stop`, '
             'early guidance, then CWD alone), both at half weight '
             '(`np_2loc_w05`), and I2CKD on the last backbone stage only '
             '(`np_l4`). The arm with the highest mean Δ vs CWD went to '
             'test on both datasets.', '']
    ranked, table = ranked_on_val(val, arms, seeds)
    if ranked is None:
        return lines + [f'Incomplete: no val result on every seed of {seeds} '
                        f'for {", ".join(table)}.', '']
    return lines + table + ['', f'Chosen in round 3: `{ranked[0]}`.', '']


def cmd_report(args):
    rows = read_rows(args.csv)
    # the dataset the choice was made on first
    datasets = sorted(dict.fromkeys(r['dataset'] for r in rows),
                      key=lambda d: d != args.choice_dataset)
    lines = ['# I2CKD accuracy study on two toy CPU proxies', '',
             f'Generated by `python benchmarks/accuracy_study.py report` from '
             f'`benchmarks/{osp.basename(args.csv)}` ({len(rows)} rows). '
             'Δ = paired difference (same seed, same start); 95 % CI = t '
             'interval of the mean Δ; "improves" / "worse" only where the '
             'interval excludes zero, "tied" otherwise.', '',
             'Arms: `student` = the student alone (CE); `cwd` = + MMRazor '
             'ChannelWiseDivergence on the logits (tau 1, weight 3); `np` = '
             '+ I2CKD, the shipped variant (L2-normalised prototypes, margin '
             '0.2, pull 1.0, prototypes per image, weight 1); `np_w3` / '
             '`np_batch` / `np_w3_batch` = the same at loss weight 3 / with '
             'prototypes per batch / both; `np_hardest` = hardest negative '
             'only; `np_sym` = + the teacher-anchored symmetric term; '
             '`np_warmup` = loss weight ramped up over the first 200 '
             'iterations; `np_2loc` = a second I2CKD term on the last '
             'backbone stage (`backbone.layer4`); `np_pix` / `np_pix3` = + '
             'the pixel-to-prototype KL (tau 0.1) at weight 1 / 3; '
             '`np_pixT` = the same at weight 1 against the teacher\'s '
             'prototypes; round 3: `np_2loc_stop` = `np_2loc` with both '
             'I2CKD terms off from iteration 500 of 1000, `np_2loc_w05` = '
             '`np_2loc` with both terms at weight 0.5, `np_l4` = I2CKD on '
             '`backbone.layer4` only; `+cwd` = together with `cwd`. '
             'Students: DeepLabV3 ResNetV1c-18 at 1/4 width, 1000 '
             'iterations; teachers: the same at 1/2 width, 1500 iterations. '
             'ToyShapes: 64x64, 6 classes, 300 train / 60 val / 200 test '
             'images; ToyStreets: 128x256, 14 imbalanced classes, 300 / 60 / '
             '200. The choice was made on ToyShapes val and applied to '
             'ToyStreets without re-tuning.', '']
    chart = {}
    for ds in datasets:
        teacher = {r['split']: r['mIoU'] for r in rows
                   if r['dataset'] == ds and r['arm'] == 'teacher'}
        lines += [f'## {ds}', '',
                  'Teacher (1/2 width, 1500 it, seed 0): ' + ', '.join(
                      f'{k} {v:.2f}' for k, v in sorted(teacher.items())) +
                  ' mIoU.', '']
        val, test = collect(rows, ds, 'val'), collect(rows, ds, 'test')
        choice = on_seeds(val, val, args.choice_seeds)
        explored = [a for a in GROUPS['explore']
                    if a != 'cwd' and choice.get(a)]
        if ds == args.choice_dataset and len(explored) > 1 \
                and choice.get('cwd'):
            lines += choice_section(val, explored, args)
            if any(val.get(a) for a in GROUPS['round3']):
                lines += round3_section(val, args)
        # the reported arms: run on all 5 seeds; variants explored on val
        # only (2-3 seeds) are listed apart, so no conclusion rests on them
        others = {a: v for a, v in test.items() if len(v) < 5}
        test = {a: v for a, v in test.items() if len(v) >= 5}
        lines += ['### Reported on test', '']
        lines += arm_table(test, 'test') + ['']
        pairs = [(a, 'student') for a in test if a != 'student']
        pairs += [(a, 'cwd') for a in test if a.endswith('+cwd')]
        pairs += [(a, 'cwd') for a in test
                  if a not in ('cwd', 'student') and not a.endswith('+cwd')]
        # a round-3 variant vs round 2's choice (both + CWD)
        pairs += [(a, f'{args.best}+cwd') for a in GROUPS['round3']
                  if a in test and f'{args.best}+cwd' in test]
        # another I2CKD variant alone vs the shipped one alone
        pairs += [(a, 'np') for a in test
                  if a.startswith('np_') and not a.endswith('+cwd')]
        if 'literal' in test:
            pairs += [(a, 'literal') for a in test if a.startswith('np')
                      and not a.endswith('+cwd')]
        lines += comparison_table(test, pairs) + ['']
        if any(a.endswith('+cwd') for a in others):
            lines += ['Variants explored on val only (2-3 seeds; their '
                      'test numbers were not used for any choice):',
                      ''] + comparison_table(
                          dict(others, **test),
                          [(a, 'cwd') for a in others if a.endswith('+cwd')]
                      ) + ['']
        chart[ds] = (test, teacher.get('test'))
    for name in ('pretrained', 'gpu'):
        path = PROTOCOLS[name]['csv']
        if args.csv == CSV and osp.isfile(path):
            lines += protocol_section(name, path, args.curves_plot
                                      if name == 'pretrained' else None)
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    if args.plot and chart:
        plot(chart, args.plot)


def plot(chart, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(chart), figsize=(6.5 * len(chart), 3.8),
                             dpi=110, squeeze=False)
    for ax, (ds, (results, teacher)) in zip(axes[0], chart.items()):
        arms = sorted(results, key=lambda a: np.mean(list(
            results[a].values())))
        means = [np.mean(list(results[a].values())) for a in arms]
        stds = [np.std(list(results[a].values()), ddof=1)
                if len(results[a]) > 1 else 0 for a in arms]
        ax.bar(arms, means, yerr=stds, capsize=4, color='#4c72b0')
        for i, a in enumerate(arms):
            ax.scatter([i] * len(results[a]), list(results[a].values()),
                       color='k', s=10, zorder=3)
        if teacher:
            ax.axhline(teacher, color='#c44e52', ls='--', label='teacher')
            ax.legend(loc='lower right')
        ax.set_ylabel('test mIoU (%)')
        ax.set_title(f'{ds}: mean ± std over paired seeds (dots: seeds)')
        lo = min(min(v.values()) for v in results.values())
        ax.set_ylim(max(0, lo - 8), max(means + [teacher or 0]) + 4)
        plt.setp(ax.get_xticklabels(), rotation=25, ha='right')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)


# ------------------------------------------- round 4: pretrained protocol
# Issue 16: students and teachers start from backbones pretrained on ToyNet
# classification (tools/toy/pretrain.py, their own images and seed), a
# teacher closer to the student (the paper's gap is 3.9 mIoU), fresh
# val/test splits (generator seed PT_DATA_SEED, never used before), val mIoU
# during training (curves) and per-class test IoU. Rows go to their own CSV
# files, so the earlier rounds' rows and report stay as they are.
PT_DATA_SEED = 16
#: Per-class test IoU and val curves of the protocol runs:
#: <csv stem>_classes.csv and <csv stem>_curves.csv beside its CSV.
CLASS_FIELDS = ['dataset', 'split', 'arm', 'seed', 'class', 'IoU']
CURVE_FIELDS = ['dataset', 'arm', 'seed', 'iteration', 'mIoU']


def _toy_data(dataset, **kw):
    return dict(dict(dataset=dataset, num_train=300, num_val=60,
                     num_test=200), **kw)


#: Fine-tuning a pretrained backbone: 0.1x the learning rate there (the
#: parameter names hold 'backbone' in the student alone and in I2CKDDistill's
#: student, 'architecture.backbone.'; connectors and heads keep 1x).
BACKBONE_LR = 'optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult=0.1'

#: protocol -> everything a run of it needs. ``pretrain``: role -> the
#: backbone overrides and pretraining options (the checkpoint is
#: ``<work-dir>/pretrain/<role>_<depth>w<width>.pth``, shared by the
#: datasets); ``iters`` / ``teacher_iters``: schedules; ``val_points``: val
#: evaluations per run (the curves); ``data``: generator arguments per
#: dataset; ``configs``: role -> config path per dataset.
PROTOCOLS = {
    # round 4 on CPU: the toy pair, teacher 1/2 width, student 1/4 width
    'pretrained': dict(
        csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_pretrained.csv'),
        pretrain=dict(student=dict(iters=1500, batch_size=64, size=64),
                      teacher=dict(iters=1500, batch_size=64, size=64)),
        # students 400 iterations (sized to the session's CPU time: 5 seeds
        # x 4 arms x 2 datasets on 2 shared cores), teacher 1500; the
        # backbone at 0.1x the
        # learning rate (chosen on ToyShapes val, one seed, student alone:
        # 800 iterations gave 18.36 val mIoU at 1x, 47.77 at 0.1x by
        # iteration 400: at 1x AdamW 3e-3 wipes the pretrained features)
        iters=400, teacher_iters=1500, val_points=4, layer4=(128, 256),
        options=[BACKBONE_LR],
        data=dict(toyshapes=_toy_data('toyshapes'),
                  toystreets=_toy_data('toystreets')),
        configs=None),  # toy_configs(dataset)
    # benchmarks/gpu_study.sh: ToyStreets 256x512, R50 -> R18 full width
    'gpu': dict(
        csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_gpu.csv'),
        # sized to finish in <= 8 min on one H200 (an estimate from
        # results_gpu.md; not run on a GPU when written): backbones 800
        # steps x 96 images (64x64, rendered on the CPU), teacher 600 and
        # students 500 iterations with AMP, 6 runs on the GPU at once
        pretrain=dict(student=dict(iters=800, batch_size=96, size=64,
                                   device='cuda', amp=True),
                      teacher=dict(iters=800, batch_size=96, size=64,
                                   device='cuda', amp=True)),
        iters=500, teacher_iters=600, val_points=4, layer4=(512, 2048),
        train_args=['--amp'], options=[BACKBONE_LR],
        data=dict(toystreets=_toy_data('toystreets', height=256,
                                       width=512, num_train=400)),
        configs=dict(toystreets={
            'teacher': 'deeplabv3_r50-d8_1xb8-gpu_toystreets-256x512.py',
            'student': 'deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py',
            'i2ckd': 'i2ckd_bottleneck_deeplabv3_r50-d8_deeplabv3_r18-d8_'
                     '1xb8-gpu_toystreets-256x512.py',
            'i2ckd_cwd': 'i2ckd-cwd_bottleneck-logits_deeplabv3_r50-d8_'
                         'deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py'}),
    ),
}


#: ``--tiny``: the overrides of a dry run (CPU, a few steps and images).
TINY = dict(
    pretrain=dict(student=dict(iters=2, batch_size=4, size=64,
                               device='cpu', amp=False),
                  teacher=dict(iters=2, batch_size=4, size=64,
                               device='cpu', amp=False)),
    iters=4, teacher_iters=2, val_points=2, train_args=[],
    data=dict(toyshapes=dict(num_train=4, num_val=2, num_test=2),
              toystreets=dict(num_train=4, num_val=2, num_test=2)),
    options=['train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False'])


def protocol(name, dataset, **overrides):
    """The settings of ``PROTOCOLS[name]`` for ``dataset`` (config paths
    resolved), with ``overrides`` (e.g. a dry run's sizes) applied."""
    if dataset not in PROTOCOLS[name]['data']:
        raise ValueError(f'protocol {name!r} has no dataset {dataset!r}; '
                         f'it has {sorted(PROTOCOLS[name]["data"])}')
    p = _merged(PROTOCOLS[name], overrides)
    p['options'] = (list(PROTOCOLS[name].get('options', [])) +
                    list(overrides.get('options', [])))
    if p['configs'] is None:
        configs = toy_configs(dataset)
    else:
        configs = {k: osp.join(ROOT, 'configs', 'toy', v)
                   for k, v in p['configs'][dataset].items()}
    return dict(p, name=name, dataset=dataset, configs=configs,
                data=p['data'][dataset])


def protocol_arm(name, proto):
    """(config path, extra config text) of an arm under ``proto``: as
    :func:`arm_spec`, with the second location's connector sized for the
    protocol's layer4 channels (student, teacher)."""
    cfg, extra = arm_spec(name, proto['configs'])
    variant = name[:-4] if name.endswith('+cwd') else name
    if variant == 'np_2loc' and tuple(proto['layer4']) != (128, 256):
        extra = _i2ckd(second_location(*proto['layer4']), **NP)
    return cfg, extra


def backbone_checkpoint(wd, role, backbone):
    return osp.join(wd, 'pretrain', f"{role}_r{backbone['depth']}"
                    f"w{backbone['base_channels']}.pth")


def ensure_pretrained(wd, proto, role):
    """The pretrained backbone checkpoint of ``role`` (``student`` /
    ``teacher``), pretrained now if missing (tools/pretrain_toy_backbone.py,
    one thread on CPU); its meta (accuracy, seconds) is printed."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'pretrain_tool', osp.join(ROOT, 'tools', 'pretrain_toy_backbone.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = proto['configs'][role]
    ckpt = backbone_checkpoint(wd, role, tool.backbone_of(cfg, role))
    if not osp.isfile(ckpt):
        opts = proto['pretrain'][role]
        args = [cfg, ckpt, '--model', role]
        for k, v in opts.items():
            if k == 'amp':
                args += ['--amp'] if v else []
            else:
                args += [f"--{k.replace('_', '-')}", str(v)]
        if opts.get('device', 'cpu') == 'cpu':
            args += ['--threads', '1']
        os.makedirs(osp.dirname(ckpt), exist_ok=True)
        run_tool('pretrain_toy_backbone.py', args,
                 log_file=ckpt[:-4] + '.log')
    record_backbone(proto, role, ckpt)
    return ckpt


PRETRAIN_FIELDS = ['role', 'depth', 'width', 'iters', 'batch_size', 'size',
                   'seed', 'heldout_acc', 'wall_s']


def record_backbone(proto, role, ckpt):
    """One row of ``<csv stem>_pretrain.csv`` per role, from the
    checkpoint's meta (held-out ToyNet accuracy, wall time)."""
    from toy.pretrain import load_meta
    path = side_csv(proto, 'pretrain')
    if any(r['role'] == role for r in read_side(path, 'heldout_acc')
           if 'seed' in r):
        return
    m = load_meta(ckpt)
    _append(path, PRETRAIN_FIELDS, [dict(
        role=role, depth=m['depth'], width=m['base_channels'],
        iters=m['iters'], batch_size=m['batch_size'], size=m['size'],
        seed=m['seed'], heldout_acc=f"{m['eval_acc']:.2f}",
        wall_s=f"{m['seconds']:.0f}")])


def init_options(prefix, ckpt):
    """--cfg-options starting the backbone at ``prefix`` (``model`` or
    ``model.architecture``) from the ``Pretrained`` checkpoint ``ckpt``."""
    return [f'{prefix}.backbone.init_cfg.type=Pretrained',
            f'{prefix}.backbone.init_cfg.checkpoint={ckpt}']


#: Config text of every protocol run: per-class IoU in the metrics.
CLASS_METRIC = (
    "custom_imports = dict(imports=['i2ckd_mm'], "
    "allow_failed_imports=False)\n"
    "val_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])\n"
    "test_evaluator = val_evaluator\n")


def ensure_protocol_data(wd, proto):
    from toy import make_toy_shapes, make_toy_streets
    data_root = osp.join(wd, 'data')
    if not osp.isdir(osp.join(data_root, 'img_dir', 'test')):
        d = dict(proto['data'])
        make = (make_toy_shapes if d.pop('dataset') == 'toyshapes' else
                make_toy_streets)
        make(data_root + '.tmp', seed=PT_DATA_SEED, **d)
        os.replace(data_root + '.tmp', data_root)
    return data_root


def curve_points(run_dir):
    """(iteration, val mIoU) of every validation MMEngine logged in the
    training run under ``run_dir``."""
    import glob
    import json
    out = []
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                r = json.loads(line) if line.strip() else {}
                if 'mIoU' in r:
                    out.append((int(r['step']), float(r['mIoU'])))
    return sorted(dict(out).items())


def _append(path, fields, rows):
    with _LOCK:
        new = not osp.isfile(path)
        with open(path, 'a', newline='') as f:
            w = csv.DictWriter(f, fields)
            if new:
                w.writeheader()
            w.writerows(rows)


def side_csv(proto, kind):
    return proto['csv'][:-4] + f'_{kind}.csv'


def protocol_run(proto, wd, arm, seed, data_root, teacher_ckpt=None,
                 student_ckpt=None, teacher_backbone=None):
    """Train one arm (or the teacher) under ``proto``, from the pretrained
    backbone, validate ``val_points`` times, test the last checkpoint with
    per-class IoU, and append its rows (main CSV, classes, curves)."""
    ds = proto['dataset']
    in_csv = {'val', 'test'} <= {r['split'] for r in read_rows(proto['csv'])
                                 if r['dataset'] == ds and r['arm'] == arm
                                 and r['seed'] == seed}
    # a teacher in the CSV whose checkpoint is not here (a resumed study on
    # a new machine) is trained again: the arms still to run need it
    if in_csv and (arm != 'teacher' or osp.isfile(osp.join(
            wd, 'teacher', f"iter_{proto['teacher_iters']}.pth"))):
        return arm, seed, 'in the CSV already'
    if arm == 'teacher':
        cfg, extra = proto['configs']['teacher'], ''
        iters, run_dir = proto['teacher_iters'], osp.join(wd, 'teacher')
        opts = init_options('model', teacher_backbone)
    else:
        cfg, extra = protocol_arm(arm, proto)
        iters = proto['iters']
        run_dir = osp.join(wd, 'runs', arm, f'seed{seed}')
        opts = init_options('model' if arm == 'student' else
                            'model.architecture', student_ckpt)
        if arm != 'student':
            opts.append(f'model.teacher_ckpt={teacher_ckpt}')
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = osp.join(run_dir, 'config.py')
    with open(cfg_path, 'w') as f:
        f.write(f'_base_ = [{cfg!r}]\n{extra}{CLASS_METRIC}')
    every = max(1, iters // proto['val_points'])
    opts = (data_options(data_root) + [f'randomness.seed={seed}'] + opts +
            schedule_options(iters) + [f'train_cfg.val_interval={every}'] +
            list(proto.get('options', [])))
    ckpt = osp.join(run_dir, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        run_tool('train.py', [cfg_path, '--work-dir', run_dir] +
                 list(proto.get('train_args', [])) + ['--cfg-options'] + opts,
                 log_file=osp.join(run_dir, 'train.log'))
    wall = training_seconds(run_dir, ckpt)
    curve = curve_points(run_dir)
    if not curve:
        raise RuntimeError(f'no val mIoU under {run_dir}')
    if in_csv:  # the teacher, trained again: the CSV keeps the first's rows
        return arm, seed, (f'trained again (no checkpoint here), val '
                           f'{curve[-1][1]:.2f}; the CSV keeps the rows of '
                           'the first training')
    test_dir = osp.join(run_dir, 'test')
    run_tool('test.py', [cfg_path, ckpt, '--work-dir', test_dir,
                         '--cfg-options'] + opts + split_options('test'),
             log_file=osp.join(run_dir, 'test.log'))
    test = last_metrics(test_dir)
    from i2ckd_mm.evaluation import CLASS_KEY
    base = dict(dataset=ds, arm=arm, seed=seed)
    _append(side_csv(proto, 'classes'), CLASS_FIELDS, [
        dict(base, split='test', **{'class': k[len(CLASS_KEY):]},
             IoU=f'{v:.2f}') for k, v in test.items()
        if k.startswith(CLASS_KEY)])
    _append(side_csv(proto, 'curves'), CURVE_FIELDS, [
        dict(base, iteration=i, mIoU=f'{m:.2f}') for i, m in curve])
    base.update(iterations=iters, wall_s=f'{wall:.0f}')
    append_rows([dict(base, split='val', mIoU=f'{curve[-1][1]:.2f}'),
                 dict(base, split='test', mIoU=f"{test['mIoU']:.2f}")],
                proto['csv'])
    return arm, seed, f"val {curve[-1][1]:.2f}, test {test['mIoU']:.2f}"


def cmd_protocol(args, overrides=None):
    """``run --protocol``: pretrain (if missing), data, teacher, arms."""
    proto = protocol(args.protocol, args.dataset, **(overrides or {}))
    if args.csv:
        proto['csv'] = osp.abspath(args.csv)
    root = osp.abspath(args.work_dir)
    wd = osp.join(root, args.dataset)
    names = []
    for a in args.arms:
        names += GROUPS.get(a, [a])
    names = list(dict.fromkeys(names))
    # only what the requested arms need: the teacher (and its backbone) for
    # distillation arms or 'teacher', the student's backbone for the arms
    teacher = osp.join(wd, 'teacher', f"iter_{proto['teacher_iters']}.pth")
    with ThreadPoolExecutor(2) as pool:  # backbones pretrain meanwhile
        backbones = [pool.submit(ensure_pretrained, root, proto, role)
                     for role in ('student', 'teacher') if role != 'teacher'
                     or 'teacher' in names or (not osp.isfile(teacher) and
                                               any(n != 'student'
                                                   for n in names))]
        data_root = ensure_protocol_data(wd, proto)
        for b in backbones:
            b.result()
    if any(n != 'student' for n in names) and not osp.isfile(teacher) or \
            'teacher' in names:
        t_backbone = ensure_pretrained(root, proto, 'teacher')
        print(protocol_run(proto, wd, 'teacher', 0, data_root,
                           teacher_backbone=t_backbone), flush=True)
    names = [n for n in names if n != 'teacher']
    s_ckpt = ensure_pretrained(root, proto, 'student') if names else None
    jobs = [(n, s) for s in args.seeds for n in names]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(protocol_run, proto, wd, n, s, data_root,
                               teacher, s_ckpt) for n, s in jobs]
        for fut in futures:
            arm, seed, status = fut.result()
            print(f'{args.dataset} {arm:16s} seed {seed}: {status}',
                  flush=True)


#: Round 4's comparisons: (arm, reference).
PT_PAIRS = [('cwd', 'student'), ('np', 'student'), ('np_2loc+cwd', 'student'),
            ('np_2loc+cwd', 'cwd'), ('np', 'cwd')]
#: What kind of class each ToyStreets class is (from the generator's design,
#: tools/toy/streets.py), for reading the per-class table.
CLASS_KINDS = {'pole': 'thin', 'traffic light': 'small', 'traffic sign':
               'small', 'bicycle': 'thin, rare', 'person': 'small',
               'fence': 'thin', 'road': 'large', 'building': 'large',
               'sky': 'large', 'car': 'medium', 'truck': 'medium, rare',
               'sidewalk': 'large', 'vegetation': 'medium',
               'terrain': 'medium'}
GOAL = 1.0  # issue 16: I2CKD + CWD >= CWD + 1.0 mIoU, interval above zero


def read_side(path, value):
    if not osp.isfile(path):
        return []
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r['seed'] = int(r['seed'])
        r[value] = float(r[value])
    return rows


def goal_check(test, best='np_2loc+cwd', ref='cwd'):
    """(mean Δ, lo, hi, seeds, met) of ``best`` vs ``ref`` against GOAL."""
    seeds, d = paired(test, best, ref)
    if len(d) < 2:
        return None
    m, (lo, hi) = t_interval(d)
    return m, lo, hi, len(d), bool(m >= GOAL and lo > 0)


def class_table(classes, ds, arms, pairs):
    """Mean test IoU per class per arm (seeds every arm has), and paired
    per-class Δ with 95 % t intervals for ``pairs``."""
    by = {}
    for r in classes:
        if r['dataset'] == ds and r['split'] == 'test':
            by.setdefault(r['arm'], {}).setdefault(r['class'], {})[
                r['seed']] = r['IoU']
    arms = [a for a in arms if a in by]
    if not arms:
        return []
    names = list(by[arms[0]])
    head = '| class | ' + ' | '.join(arms) + ' | ' + ' | '.join(
        f'Δ {a} vs {b} [95 % CI]' for a, b in pairs) + ' |'
    lines = [head, '|' + '---|' * (1 + len(arms) + len(pairs))]
    for c in names:
        kind = CLASS_KINDS.get(c) if ds == 'toystreets' else None
        cells = [f'{c} ({kind})' if kind else c]
        for a in arms:
            v = np.array([x for x in by[a].get(c, {}).values()
                          if not np.isnan(x)])
            cells.append(f'{v.mean():.1f}' if len(v) else 'n/a')
        for a, b in pairs:
            sa, sb = by.get(a, {}).get(c, {}), by.get(b, {}).get(c, {})
            common = [s for s in sorted(set(sa) & set(sb))
                      if not (np.isnan(sa[s]) or np.isnan(sb[s]))]
            d = np.array([sa[s] - sb[s] for s in common])
            if len(d) < 2:
                cells.append('n/a')
                continue
            m, (lo, hi) = t_interval(d)
            mark = '**' if lo > 0 or hi < 0 else ''
            cells.append(f'{mark}{m:+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def protocol_section(name, path, curves_plot=None):
    """The report section of a round-4 protocol CSV (``pretrained``: the
    CPU study; ``gpu``: benchmarks/gpu_study.sh)."""
    from toy.pretrain import PRETRAIN_SEED
    rows = read_rows(path)
    classes = read_side(path[:-4] + '_classes.csv', 'IoU')
    curves = read_side(path[:-4] + '_curves.csv', 'mIoU')
    backbones = read_side(path[:-4] + '_pretrain.csv', 'heldout_acc')
    p = PROTOCOLS[name]
    title = ('Round 4: pretrained backbones, fresh test splits'
             if name == 'pretrained' else
             'GPU study (benchmarks/gpu_study.sh): ToyStreets 256x512, '
             'R50 -> R18 full width')
    lines = [f'## {title}', '',
             f'Generated from `benchmarks/{osp.basename(path)}` '
             f'({len(rows)} rows) and its `_classes` / `_curves` / '
             '`_pretrain` files. Protocol (issue 16): both backbones start '
             'from a ToyNet-classification checkpoint (`tools/'
             'pretrain_toy_backbone.py`: 12 classes of procedurally drawn '
             'objects and textures, their own renderer and seed '
             f'{PRETRAIN_SEED}, never a segmentation image) loaded as '
             "an MMSeg `init_cfg=dict(type='Pretrained', ...)` through the "
             'weights-only loader; fresh data from generator seed '
             f'{PT_DATA_SEED} (train, val and test splits never used before)'
             '. One choice was made on them, on ToyShapes **val**: the '
             'backbone learning rate (0.1x, from two student-alone pilots of '
             'one seed, 800 iterations; the pilots also printed their test '
             'mIoU, which was not used); the arms were fixed beforehand, the '
             'iterations by the CPU time of the session. Every arm and the '
             'teacher '
             f"validated {p['val_points']} times during training (curves); "
             'per-class IoU on test. Arms: `student` alone, `cwd`, `np` '
             '(the shipped I2CKD at the bottleneck) and `np_2loc+cwd` (the '
             'recommended I2CKD + CWD: I2CKD at the bottleneck and '
             '`backbone.layer4`, with CWD).', '']
    if backbones:
        lines += ['| pretrained backbone | depth | width | steps x batch | '
                  'image | ToyNet held-out top-1 | wall s |',
                  '|---|---|---|---|---|---|---|']
        for b in backbones:
            lines.append(f"| {b['role']} | {b['depth']} | {b['width']} | "
                         f"{b['iters']} x {b['batch_size']} | {b['size']} | "
                         f"{b['heldout_acc']:.1f} % | {b['wall_s']} |")
        lines.append('')
    goals = {}
    for ds in sorted(dict.fromkeys(r['dataset'] for r in rows)):
        teacher = {r['split']: r for r in rows
                   if r['dataset'] == ds and r['arm'] == 'teacher'}
        test = collect(rows, ds, 'test')
        val = collect(rows, ds, 'val')
        lines += [f'### {ds}', '']
        if teacher:
            t = teacher.get('test', teacher.get('val'))
            lines.append(
                f"Teacher ({t['iterations']} iterations, seed 0, "
                f"{t['wall_s']} s): " + ', '.join(
                    f"{k} {v['mIoU']:.2f}" for k, v in sorted(
                        teacher.items())) + ' mIoU.')
            if 'student' in test and 'test' in teacher:
                st = np.mean(list(test['student'].values()))
                sv = np.mean(list(val.get('student', {0: np.nan}).values()))
                lines[-1] += (f" Teacher - student alone (mean of "
                              f"{len(test['student'])} seeds): "
                              f"**{teacher['test']['mIoU'] - st:.2f} mIoU on "
                              f"test**, {teacher['val']['mIoU'] - sv:.2f} on "
                              'val (the paper: 78.07 - 74.21 = 3.86).')
            lines.append('')
        walls = {}
        for r in rows:
            if r['dataset'] == ds and r['split'] == 'test' \
                    and r['arm'] != 'teacher':
                walls.setdefault(r['arm'], []).append(float(r['wall_s']))
        iters = sorted({r['iterations'] for r in rows if r['dataset'] == ds
                        and r['arm'] != 'teacher'})
        lines += [f"Students: {', '.join(iters)} iterations; training wall "
                  'time per run (mean s, 1 thread): ' + ', '.join(
                      f'{a} {np.mean(v):.0f}' for a, v in sorted(
                          walls.items())) + '.', '']
        lines += arm_table(test, 'test') + ['']
        lines += comparison_table(test, PT_PAIRS) + ['']
        g = goal_check(test)
        if g:
            goals[ds] = g
        lines += ['Per-class test IoU (mean over seeds) and paired per-class '
                  'Δ (bold: the interval excludes zero):', '']
        lines += class_table(classes, ds, ['student', 'cwd', 'np',
                                           'np_2loc+cwd'],
                             [('np_2loc+cwd', 'cwd'), ('np', 'student')])
        lines.append('')
    if goals:
        lines += ['### The goal', '']
        for ds, (m, lo, hi, n, met) in goals.items():
            lines.append(
                f'- {ds}: np_2loc+cwd vs cwd {m:+.2f} [{lo:+.2f}, {hi:+.2f}]'
                f', {n} seeds: goal (>= +{GOAL:.1f}, interval above zero) '
                + ('**met**' if met else '**not met**') + '.')
        lines.append('')
    if curves_plot and curves:
        plot_curves(curves, rows, curves_plot)
        lines += [f'![val mIoU vs iteration](../docs/images/'
                  f'{osp.basename(curves_plot)})', '']
    return lines


def plot_curves(curves, rows, path):
    """Val mIoU vs iteration, every arm in one panel per dataset: mean over
    seeds (line) and the seeds' range (band); the teacher's final val mIoU
    dashed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    datasets = sorted(dict.fromkeys(r['dataset'] for r in curves))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets),
                                                        3.9), dpi=110,
                             squeeze=False)
    colours = {'student': '#7f7f7f', 'cwd': '#4c72b0', 'np': '#55a868',
               'np_2loc+cwd': '#c44e52'}
    for ax, ds in zip(axes[0], datasets):
        for arm in ['student', 'np', 'cwd', 'np_2loc+cwd']:
            pts = {}
            for r in curves:
                if r['dataset'] == ds and r['arm'] == arm:
                    pts.setdefault(int(r['iteration']), []).append(r['mIoU'])
            if not pts:
                continue
            it = sorted(pts)
            mean = [np.mean(pts[i]) for i in it]
            n = min(len(v) for v in pts.values())
            ax.plot(it, mean, marker='o', ms=3, color=colours.get(arm),
                    label=f'{arm} ({n} seeds)')
            ax.fill_between(it, [min(pts[i]) for i in it],
                            [max(pts[i]) for i in it], alpha=0.15,
                            color=colours.get(arm))
        t = [r['mIoU'] for r in rows if r['dataset'] == ds
             and r['arm'] == 'teacher' and r['split'] == 'val']
        if t:
            ax.axhline(t[0], color='k', ls='--', lw=1, label='teacher (end)')
        ax.set_xlabel('iteration')
        ax.set_ylabel('val mIoU (%)')
        ax.set_title(f'{ds}: pretrained starts, mean over seeds (band: range)')
        ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)


def cmd_walltimes(args):
    """Rewrite the wall_s column from the run folders (e.g. for runs that an
    interrupted study process had started), with training_seconds()."""
    rows = read_rows(args.csv)
    for r in rows:
        wd = osp.abspath(osp.join(args.work_dir, r['dataset']))
        run_dir = (osp.join(wd, 'teacher') if r['arm'] == 'teacher' else
                   osp.join(wd, 'runs', r['arm'], f"seed{r['seed']}"))
        ckpt = osp.join(run_dir, f"iter_{r['iterations']}.pth")
        if osp.isfile(ckpt):
            r['wall_s'] = f'{training_seconds(run_dir, ckpt):.0f}'
    with open(args.csv, 'w', newline='') as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(dict(r, mIoU=f"{r['mIoU']:.2f}") for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('--dataset', choices=('toyshapes', 'toystreets'),
                   default='toyshapes')
    r.add_argument('--work-dir',
                   help='default work_dirs/accuracy_study (with --protocol '
                   'P: work_dirs/accuracy_study_P)')
    r.add_argument('--arms', nargs='+', default=['final'],
                   help=f'arm names or groups {sorted(GROUPS)}; variants: '
                   f'{sorted(VARIANTS)} (+cwd suffix adds CWD), student, cwd')
    r.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    r.add_argument('--best', default='np_2loc',
                   help='the I2CKD variant the final group calls BEST')
    r.add_argument('--jobs', type=int, default=2)
    r.add_argument('--protocol', choices=sorted(PROTOCOLS),
                   help='round 4: pretrained starts, fresh splits (seed '
                   f'{PT_DATA_SEED}), curves and per-class IoU, own CSV '
                   "files; 'pretrained' (CPU toy pair) or 'gpu' "
                   '(benchmarks/gpu_study.sh)')
    r.add_argument('--csv', help='--protocol: write rows there instead')
    r.add_argument('--tiny', action='store_true',
                   help='--protocol: a dry run at tiny size (a few '
                   'iterations and images, CPU) to check the pipeline and '
                   'time it')
    q = sub.add_parser('report')
    q.add_argument('--csv', default=CSV)
    q.add_argument('--choice-seeds', nargs='+', type=int, default=[0, 1],
                   help='the val seeds every variant was screened on')
    q.add_argument('--choice-dataset', default='toyshapes',
                   help='the dataset whose val split the choice used (the '
                   'other is reported without a choice section)')
    q.add_argument('--second-stage-seeds', nargs='+', type=int,
                   default=[0, 1, 2],
                   help='the val seeds the --top best were compared on')
    q.add_argument('--best', default='np_2loc',
                   help='the variant round 2 chose (round 3 starts from it)')
    q.add_argument('--round3-seeds', nargs='+', type=int, default=[0, 1, 2],
                   help='the val seeds of round 3')
    q.add_argument('--top', type=int, default=3,
                   help='how many variants go to the second stage')
    q.add_argument('--out', default=osp.join(ROOT, 'benchmarks',
                                             'accuracy_study.md'))
    q.add_argument('--plot', default=osp.join(ROOT, 'docs', 'images',
                                              'accuracy_study.png'))
    q.add_argument('--curves-plot', default=osp.join(
        ROOT, 'docs', 'images', 'accuracy_study_pretrained_curves.png'),
        help='round 4: val mIoU vs iteration of every arm')
    t = sub.add_parser('walltimes', help=cmd_walltimes.__doc__.split('\n')[0])
    t.add_argument('--csv', default=CSV)
    t.add_argument('--work-dir', default='work_dirs/accuracy_study')
    args = p.parse_args(argv)
    if args.cmd == 'run' and args.work_dir is None:
        args.work_dir = 'work_dirs/accuracy_study' + (
            f'_{args.protocol}' if args.protocol else '')
    if args.cmd == 'run' and args.protocol:
        return cmd_protocol(args, TINY if args.tiny else None)
    dict(run=cmd_run, report=cmd_report, walltimes=cmd_walltimes)[args.cmd](
        args)


if __name__ == '__main__':
    main()

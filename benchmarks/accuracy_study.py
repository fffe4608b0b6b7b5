"""Paired-seed accuracy study of I2CKD on two toy CPU proxies.

``run`` trains the runs of arms x seeds that a protocol's CSV lacks (each
run appends its val and test rows, so a command resumes); ``report`` writes
``accuracy_study.md`` and its charts from the CSV files alone. Protocols,
commands, and how to add an arm or a protocol: ``benchmarks/README.md``.
"""
import argparse
import glob
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import harness
from harness import ROOT, md_table, mean_ci, paired, read_csv, verdict
from toy import toy_configs

CSV = osp.join(ROOT, 'benchmarks', 'accuracy_study.csv')
STUDENT_ITERS, TEACHER_ITERS = 1000, 1500


def _py(obj):
    """Config text of a value: dicts as ``dict(key=value, ...)``."""
    if isinstance(obj, dict):
        return f"dict({', '.join(f'{k}={_py(v)}' for k, v in obj.items())})"
    return repr(obj)


def _merged(a: dict, b: dict) -> dict:
    """``a`` updated with ``b``, nested dicts merged key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = (_merged(out[k], v) if isinstance(v, dict)
                  and isinstance(out.get(k), dict) else v)
    return out


def _i2ckd(extra_distiller=None, schedule=None, **opts):
    """Config text setting I2CKDLoss ``opts``, ``extra_distiller`` merged
    into the distiller (e.g. a second location); ``schedule``: loss name ->
    weight schedule (DistillLossWeightScheduleHook)."""
    distiller = _merged(dict(distill_losses=dict(loss_i2ckd=opts)),
                        extra_distiller or {})
    hook = ("custom_hooks = [dict(type='mmrazor.DistillLossWeightScheduleHook'"
            f', losses={_py(schedule)})]\n') if schedule else ''
    return f'model = dict(distiller={_py(distiller)})\n' + hook


def second_location(in_channel=128, out_channel=256):
    """The shipped second-location block (one source for the configs and
    this study) with the student's and the teacher's layer4 channels."""
    from mmengine.config import Config
    path = osp.join(ROOT, 'configs', '_base_', 'i2ckd', 'i2ckd_layer4.py')
    block = Config.fromfile(path).i2ckd_layer4.to_dict()
    block['connectors']['loss_i2ckd4_sfeat'].update(
        in_channel=in_channel, out_channel=out_channel)
    return block


# Every arm states all the loss options it studies, so the arms stay the
# same whatever the shipped configs default to. LITERAL: our reading of the
# paper (docs/method.md); NP: the shipped variant. Each variant in words:
# the report's arms paragraph (ARMS_TEXT).
LITERAL = dict(normalize=False, margin=1.0, pull_weight=0.0)
NP = dict(normalize=True, margin=0.2, pull_weight=1.0)
_L4, _HALF = second_location(), STUDENT_ITERS // 2
#: I2CKD variant -> extra config text (on the I2CKD / I2CKD+CWD configs).
VARIANTS = {
    'literal': _i2ckd(**LITERAL),
    'np': _i2ckd(**NP),
    'np_w3': _i2ckd(**NP, loss_weight=3.0),
    'np_batch': _i2ckd(**NP, prototype_scope='batch'),
    'np_w3_batch': _i2ckd(**NP, loss_weight=3.0, prototype_scope='batch'),
    'np_hardest': _i2ckd(**NP, negatives='hardest'),
    'np_sym': _i2ckd(**NP, symmetric=True),
    'np_warmup': _i2ckd(**NP, schedule=dict(loss_i2ckd=dict(
        warmup_iters=200))),
    'np_2loc': _i2ckd(_L4, **NP),
    'np_pix': _i2ckd(**NP, pixel_weight=1.0),
    'np_pix3': _i2ckd(**NP, pixel_weight=3.0),
    'np_pixT': _i2ckd(**NP, pixel_weight=1.0, pixel_prototypes='teacher'),
    # round 3 (ROUND3), designed after round 2's test results were seen
    'np_2loc_stop': _i2ckd(_L4, **NP, schedule=dict(
        loss_i2ckd=dict(stop_iter=_HALF), loss_i2ckd4=dict(stop_iter=_HALF))),
    'np_2loc_w05': _i2ckd(_merged(_L4, dict(distill_losses=dict(
        loss_i2ckd4=dict(loss_weight=0.5)))), **NP, loss_weight=0.5),
    # the bottleneck term at weight 0 is still computed for its diagnostics
    'np_l4': _i2ckd(_L4, **NP, loss_weight=0.0),
}
ROUND3 = ('np_2loc_stop', 'np_2loc_w05', 'np_l4')
BEST = 'np_2loc'  # round 2's choice on val
#: --protocol methods: each method's toy config -> it with I2CKD.
METHODS = {'kd': 'i2ckd_kd', 'dist': 'i2ckd_dist', 'mgd': 'i2ckd_mgd',
           'cwd': 'i2ckd_cwd'}
GROUPS = {
    # rounds 1-2: every variant screened on ToyShapes val on top of CWD,
    # then on test (BEST = --best, the choice on val)
    'explore': ['cwd'] + [f'{v}+cwd' for v in VARIANTS
                          if v != 'literal' and v not in ROUND3],
    'final': ['student', 'np', 'cwd', 'BEST+cwd', 'BEST', 'literal'],
    'round3': [f'{v}+cwd' for v in ROUND3],
    'round4': ['student', 'cwd', 'np', 'np_2loc+cwd'],  # pretrained / gpu
    'methods': ['student'] + [a for pair in METHODS.items() for a in pair],
}


def arm_spec(name, configs):
    """(config role path, extra config text) of an arm."""
    if name == 'student':
        return configs['student'], ''
    if name == 'cwd':  # the I2CKD + CWD config, I2CKD off
        return configs['i2ckd_cwd'], _i2ckd(loss_weight=0.0)
    cwd = name.endswith('+cwd')
    variant = name[:-4] if cwd else name
    if variant not in VARIANTS:
        raise KeyError(f'unknown arm {name!r}; variants: {sorted(VARIANTS)} '
                       "(+cwd adds CWD), 'student', 'cwd'")
    return configs['i2ckd_cwd' if cwd else 'i2ckd'], VARIANTS[variant]


# --------------------------------------------------------------- protocols
#: A pretrained backbone fine-tunes at 0.1x the learning rate (the
#: student's parameter names hold 'backbone' alone and in I2CKDDistill).
BACKBONE_LR = 'optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult=0.1'
PT_DATA_SEED = 16
ROLES = ('student', 'teacher')  # the pretrained backbones
_ROUND4 = dict(data_seed=PT_DATA_SEED, data=dict(toyshapes={}, toystreets={}),
               pretrain=dict.fromkeys(ROLES, dict(iters=1500, batch_size=64,
                                                  size=64)),
               teacher_iters=1500, val_points=4, per_class=True,
               options=[BACKBONE_LR])
_GPU = '_1xb8-gpu_toystreets-256x512.py'
#: protocol -> its settings (no ``pretrain``: random starts; no
#: ``configs``: the toy configs; ``layer4``: student, teacher channels there
#: if not the toy's; ``config_arms``: an arm named as a config role is that
#: config).
PROTOCOLS = {
    'scratch': dict(  # rounds 1-3: random starts
        csv=CSV, data_seed=0, data=dict(toyshapes={}, toystreets={}),
        iters=STUDENT_ITERS, teacher_iters=TEACHER_ITERS),
    # round 4: students 400 iterations for 5 seeds x 4 arms x 2 datasets on
    # 2 shared cores; 0.1x chosen on ToyShapes val (a student alone, one
    # seed: 18.36 after 800 iterations at 1x, 47.77 by 400 at 0.1x)
    'pretrained': dict(_ROUND4, iters=400, csv=osp.join(
        ROOT, 'benchmarks', 'accuracy_study_pretrained.csv')),
    # 600 iterations: round 4's students still rose at 400
    'methods': dict(_ROUND4, iters=600, config_arms=True, csv=osp.join(
        ROOT, 'benchmarks', 'accuracy_study_methods.csv')),
    # benchmarks/gpu_run.sh part d: sized for <= 8 min on one H200 (estimated
    # from results_gpu.md), 6 runs on the GPU at once
    'gpu': dict(
        _ROUND4, csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_gpu.csv'),
        data=dict(toystreets=dict(height=256, width=512, num_train=400)),
        pretrain=dict.fromkeys(ROLES, dict(iters=800, batch_size=96, size=64,
                                           device='cuda', amp=True)),
        iters=500, teacher_iters=600, train_args=['--amp'],
        layer4=(512, 2048), configs=dict(toystreets={
            'teacher': 'deeplabv3_r50-d8' + _GPU,
            'student': 'deeplabv3_r18-d8' + _GPU,
            'i2ckd': 'i2ckd_bottleneck_deeplabv3_r50-d8_deeplabv3_r18-d8'
                     + _GPU,
            'i2ckd_cwd': 'i2ckd-cwd_bottleneck-logits_deeplabv3_r50-d8_'
                         'deeplabv3_r18-d8' + _GPU})),
}
#: ``--tiny``: the overrides of a dry run (CPU, a few steps and images).
TINY = dict(
    pretrain=dict.fromkeys(ROLES, dict(iters=2, batch_size=4, size=64,
                                       device='cpu', amp=False)),
    iters=4, teacher_iters=2, val_points=2, train_args=[],
    data={ds: dict(num_train=4, num_val=2, num_test=2)
          for ds in ('toyshapes', 'toystreets')},
    options=['train_dataloader.batch_size=2'] + [
        f'{split}_dataloader.{opt}' for split in ('train', 'val', 'test')
        for opt in ('num_workers=0', 'persistent_workers=False')])


def protocol(name, dataset, **overrides):
    """``PROTOCOLS[name]`` for ``dataset`` (config paths resolved), with
    ``overrides`` (e.g. :data:`TINY`) applied."""
    base = PROTOCOLS[name]
    if dataset not in base['data']:
        raise ValueError(f'protocol {name!r} has no dataset {dataset!r}; '
                         f'it has {sorted(base["data"])}')
    p = _merged(base, overrides)
    p['options'] = base.get('options', []) + overrides.get('options', [])
    if not base.get('pretrain'):
        p['pretrain'] = None  # a dry run pretrains what its protocol does
    configs = (toy_configs(dataset) if 'configs' not in p else
               {k: osp.join(ROOT, 'configs', 'toy', v)
                for k, v in p['configs'][dataset].items()})
    return dict(p, name=name, dataset=dataset, configs=configs,
                data=p['data'][dataset])


def protocol_arm(name, proto):
    """(config path, extra text) of an arm under ``proto``: a config role as
    shipped (``config_arms``), else :func:`arm_spec` with the second
    location sized for ``proto['layer4']``; ``<arm>@N`` is ``<arm>``."""
    name = name.split('@')[0]
    if proto.get('config_arms') and name in proto['configs'] \
            and name != 'teacher':
        return proto['configs'][name], ''
    cfg, extra = arm_spec(name, proto['configs'])
    if name.split('+')[0] == 'np_2loc' and proto.get('layer4'):
        extra = _i2ckd(second_location(*proto['layer4']), **NP)
    return cfg, extra


def arm_iters(arm, proto):
    """Iterations of ``arm``: N for ``<arm>@N``, else the protocol's."""
    return int(arm.split('@')[1]) if '@' in arm else proto['iters']


# -------------------------------------------------------------------- runs
PRETRAIN_FIELDS = ['role', 'depth', 'width', 'iters', 'batch_size', 'size',
                   'seed', 'heldout_acc', 'wall_s']
STEP_FIELDS = ['dataset', 'arm', 'seed', 'step_ms']


def backbone_path(wd, proto, role):
    """Where the pretrained backbone of ``role`` goes (by depth and width;
    outside threads: MMEngine's config parsing is not thread-safe)."""
    from mmengine.config import Config
    bb = Config.fromfile(proto['configs'][role]).model.backbone
    return osp.join(wd, 'pretrain',
                    f"{role}_r{bb['depth']}w{bb['base_channels']}.pth")


def ensure_pretrained(ckpt, proto, role):
    """The backbone checkpoint of ``role``, pretrained if missing (one CPU
    thread), with its ``_pretrain`` CSV row."""
    from toy.pretrain import load_meta
    if not osp.isfile(ckpt):
        opts = proto['pretrain'][role]
        args = [proto['configs'][role], ckpt, '--model', role] + [
            a for k, v in opts.items() if k != 'amp'
            for a in (f"--{k.replace('_', '-')}", str(v))]
        args += ['--amp'] * bool(opts.get('amp')) + ['--threads', '1'] * (
            opts.get('device', 'cpu') == 'cpu')
        os.makedirs(osp.dirname(ckpt), exist_ok=True)
        harness.run_tool('pretrain_toy_backbone.py', args,
                         log_file=ckpt[:-4] + '.log')
    path = harness.side_csv(proto['csv'], 'pretrain')
    if not any(r['role'] == role for r in read_csv(path, 'heldout_acc')):
        m = load_meta(ckpt)
        harness.append_csv(path, PRETRAIN_FIELDS, [dict(
            role=role, depth=m['depth'], width=m['base_channels'],
            iters=m['iters'], batch_size=m['batch_size'], size=m['size'],
            seed=m['seed'], heldout_acc=f"{m['eval_acc']:.2f}",
            wall_s=f"{m['seconds']:.0f}")])
    return ckpt


def step_times(csv, dataset):
    """arm -> seed -> step time (ms) of ``dataset`` in the ``_steps`` file
    of ``csv``."""
    out = {}
    for r in read_csv(harness.side_csv(csv, 'steps'), 'step_ms'):
        if r['dataset'] == dataset:
            out.setdefault(r['arm'], {})[r['seed']] = r['step_ms']
    return out


def record_step_ms(proto, run_dir, arm, seed):
    """Record once in the ``_steps`` CSV the median logged training
    iteration time of a run (the matched-compute arm scales by it)."""
    if seed in step_times(proto['csv'], proto['dataset']).get(arm, {}):
        return
    times = [json.loads(line)['time'] for f in glob.glob(osp.join(
        run_dir, '*', 'vis_data', 'scalars.json')) for line in open(f)
        if '"loss"' in line]  # not the validations
    if times:
        harness.append_csv(harness.side_csv(proto['csv'], 'steps'),
                           STEP_FIELDS, [dict(
                               dataset=proto['dataset'], arm=arm, seed=seed,
                               step_ms=f'{1000 * np.median(times):.1f}')])


def run(proto, wd, arm, seed, teacher=None, backbone=None, spec=None):
    """One run (``arm``: ``'teacher'`` or a study arm; ``spec``: its config
    and extra text if resolved already), skipped when the CSV has it, but a
    teacher without its checkpoint here (a study resumed on a new machine)
    trains again for the arms. Returns (arm, seed, status)."""
    is_teacher = arm == 'teacher'
    alone = is_teacher or arm.split('@')[0] == 'student'
    run_dir = osp.join(wd, 'teacher') if is_teacher else osp.join(
        wd, 'runs', arm, f'seed{seed}')
    iters = proto['teacher_iters'] if is_teacher else arm_iters(arm, proto)
    if harness.done(read_csv(proto['csv']), proto['dataset'], arm, seed) \
            and not (is_teacher and not osp.isfile(
                osp.join(run_dir, f'iter_{iters}.pth'))):
        status = 'in the CSV already'
    else:
        cfg, extra = ((proto['configs']['teacher'], '') if is_teacher else
                      spec or protocol_arm(arm, proto))
        opts = [] if alone else [f'model.teacher_ckpt={teacher}']
        if backbone:
            pre = ('model' if alone else 'model.architecture') + \
                '.backbone.init_cfg.'
            opts = [pre + 'type=Pretrained', pre + f'checkpoint={backbone}'
                    ] + opts
        status = harness.run_arm(proto, run_dir, arm, seed, cfg, extra, opts,
                                 iters)
    if proto.get('config_arms') and not is_teacher:
        record_step_ms(proto, run_dir, arm, seed)
    return arm, seed, status


def matched_arm(csv, dataset, iters):
    """``(<method>@N, method, ratio)``: the plain method with the best mean
    val mIoU, N = ``iters`` x the median over seeds of its I2CKD
    combination's step time over its own; None while rows are missing."""
    val = collect(read_csv(csv), dataset, 'val')
    if not all(m in val for m in METHODS):
        return None
    best = max(METHODS, key=lambda m: _mean(val[m]))
    steps = step_times(csv, dataset)
    plain, combo = steps.get(best, {}), steps.get(METHODS[best], {})
    ratios = [combo[s] / plain[s] for s in sorted(set(plain) & set(combo))]
    if not ratios:
        return None
    ratio = float(np.median(ratios))
    return f'{best}@{int(round(iters * ratio))}', best, ratio


def cmd_run(args, overrides=None):
    """``run``: backbones, data, teacher, then the arms, ``--jobs`` at once,
    seed-major (pairs complete early)."""
    proto = protocol(args.protocol, args.dataset, **(overrides or {}))
    study_csv = proto['csv']  # where 'matched' is resolved if --csv lacks it
    if args.csv:
        proto['csv'] = osp.abspath(args.csv)
    root = osp.abspath(args.work_dir)
    wd = osp.join(root, args.dataset)
    names = list(dict.fromkeys(n.replace('BEST', args.best) for a in args.arms
                               for n in GROUPS.get(a, [a])))
    if 'matched' in names:
        m = (matched_arm(proto['csv'], args.dataset, proto['iters']) or
             matched_arm(study_csv, args.dataset, proto['iters']))
        if m is None:
            raise SystemExit(
                f'matched: no matched-compute arm for {args.dataset} yet: it'
                ' needs the val rows of every plain method and the step '
                'times of the best one and its I2CKD combination')
        print(f'matched: {m[0]} ({m[1]}, step-time ratio {m[2]:.3f})')
        names = [m[0] if n == 'matched' else n for n in names]
    teacher = osp.join(wd, 'teacher', f"iter_{proto['teacher_iters']}.pth")
    need_teacher = 'teacher' in names or not osp.isfile(teacher) and any(
        n != 'student' for n in names)
    names = [n for n in names if n != 'teacher']
    roles = [r for r, needed in (('student', names), ('teacher', need_teacher))
             if proto['pretrain'] and needed]
    with ThreadPoolExecutor(2) as pool:  # backbones pretrain meanwhile
        ckpts = {r: pool.submit(ensure_pretrained,
                                backbone_path(root, proto, r), proto, r)
                 for r in roles}
        proto['data_root'] = harness.make_data(
            osp.join(wd, 'data'), args.dataset, proto['data_seed'],
            **proto['data'])
        ckpts = {r: c.result() for r, c in ckpts.items()}
    if need_teacher:
        print(run(proto, wd, 'teacher', 0, backbone=ckpts.get('teacher')),
              flush=True)
    specs = {n: protocol_arm(n, proto) for n in names}
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, proto, wd, n, s, teacher,
                               ckpts.get('student'), specs[n])
                   for s in args.seeds for n in names]
        for fut in futures:
            arm, seed, status = fut.result()
            print(f'{args.dataset} {arm:24s} seed {seed}: {status}',
                  flush=True)


# ------------------------------------------------------------------ tables
def _mean(by_seed):
    return np.mean(list(by_seed.values()))


def collect(rows, dataset, split, number='mIoU'):
    """arm -> seed -> ``number`` of the study arms (not the teacher)."""
    out = {}
    for r in rows:
        if (r['dataset'], r['split']) == (dataset, split) \
                and r['arm'] != 'teacher':
            out.setdefault(r['arm'], {})[r['seed']] = r[number]
    return out


def on_seeds(results, arms, seeds):
    """``results`` of ``arms`` (arm -> seed -> mIoU) kept to ``seeds``."""
    return {a: {s: v for s, v in results[a].items() if s in seeds}
            for a in arms}


def pair(results, a, b):
    """(seeds, a - b) of two arms in ``results`` (arm -> seed -> mIoU)."""
    return paired(results.get(a, {}), results.get(b, {}))


def above_zero(results, a, b):
    """Whether the 95 % interval of ``a`` - ``b`` lies above zero."""
    d = pair(results, a, b)[1]
    return len(d) > 1 and mean_ci(d)[1] > 0


def comparison_table(results, pairs):
    """Paired Δ, 95 % CI, wins and verdict of each (arm, reference)."""
    rows = []
    for a, b in pairs:
        _, d = pair(results, a, b)
        if len(d):
            m, lo, hi = mean_ci(d)
            ci = f'[{lo:+.2f}, {hi:+.2f}]' if len(d) > 1 else 'n/a'
            rows.append([a, b, len(d), f'{m:+.2f}', ci,
                         f'{(d > 0).sum()}/{len(d)}', verdict(lo, hi)])
    return md_table(['arm', 'vs', 'seeds', 'mean Δ mIoU', '95 % CI', 'wins',
                     'verdict'], rows)


def arm_table(results, split):
    """Mean ± std and the seeds' mIoU of each arm, ascending."""
    rows = []
    for arm, by_seed in sorted(results.items(), key=lambda kv: _mean(kv[1])):
        v = np.array(list(by_seed.values()))
        std = v.std(ddof=1) if len(v) > 1 else float('nan')
        rows.append([arm, len(v), f'{v.mean():.2f} ± {std:.2f}', ', '.join(
            f'{s}: {m:.2f}' for s, m in sorted(by_seed.items()))])
    return md_table(['arm', 'seeds', f'{split} mIoU mean ± std', 'per seed'],
                    rows)


def tables(results, pairs, split='test'):
    """:func:`arm_table` and :func:`comparison_table` of ``pairs``."""
    return arm_table(results, split) + [''] + comparison_table(
        results, pairs) + ['']


#: What kind each ToyStreets class is (tools/toy/streets.py's design).
CLASS_KINDS = {'pole': 'thin', 'traffic light': 'small', 'traffic sign':
               'small', 'bicycle': 'thin, rare', 'person': 'small',
               'fence': 'thin', 'road': 'large', 'building': 'large',
               'sky': 'large', 'car': 'medium', 'truck': 'medium, rare',
               'sidewalk': 'large', 'vegetation': 'medium',
               'terrain': 'medium'}


def class_table(classes, ds, arms, pairs):
    """Mean test IoU per class and arm, and the paired per-class Δ with its
    95 % interval for ``pairs`` (bold where it excludes zero)."""
    by = {}  # arm -> class -> seed -> IoU
    for r in classes:
        if (r['dataset'], r['split']) == (ds, 'test'):
            by.setdefault(r['arm'], {}).setdefault(r['class'], {})[
                r['seed']] = r['IoU']
    arms = [a for a in arms if a in by]
    if not arms:
        return []
    rows = []
    for c in by[arms[0]]:
        kind = CLASS_KINDS.get(c) if ds == 'toystreets' else None
        row = [f'{c} ({kind})' if kind else c]
        for a in arms:
            v = [x for x in by[a].get(c, {}).values() if not np.isnan(x)]
            row.append(f'{np.mean(v):.1f}' if v else 'n/a')
        for a, b in pairs:
            d = paired(by.get(a, {}).get(c, {}), by.get(b, {}).get(c, {}))[1]
            m, lo, hi = mean_ci(d)
            bold = '**' if lo > 0 or hi < 0 else ''
            row.append(f'{bold}{m:+.1f} [{lo:+.1f}, {hi:+.1f}]{bold}'
                       if len(d) > 1 else 'n/a')
        rows.append(row)
    return md_table(['class'] + arms + [f'Δ {a} vs {b} [95 % CI]'
                                        for a, b in pairs], rows)


# ---------------------------------------------------- report: rounds 1-3
#: Rounds 1-3's choice on ToyShapes val: stage 1 on CHOICE_SEEDS, the TOP
#: best of stage 1 on STAGE2_SEEDS, round 3 on ROUND3_SEEDS.
CHOICE_SEEDS, STAGE2_SEEDS, TOP, ROUND3_SEEDS = (0, 1), (0, 1, 2), 3, (0, 1, 2)
ARMS_TEXT = (
    'Arms: `student` (CE); `cwd` (+ ChannelWiseDivergence, tau 1, weight 3)'
    '; `np` (+ I2CKD as shipped: normalised per-image prototypes, margin '
    '0.2, pull 1, weight 1); `np_w3` / `np_batch` / `np_w3_batch` (weight 3'
    ' / per-batch prototypes / both); `np_hardest` (hardest negative); '
    '`np_sym` (+ teacher-anchored term); `np_warmup` (200-iteration ramp); '
    '`np_2loc` (+ a term on `backbone.layer4`); `np_pix` / `np_pix3` / '
    '`np_pixT` (+ pixel-to-prototype KL, tau 0.1, weight 1 / 3 / 1 on the '
    "teacher's prototypes); round 3: `np_2loc_stop` (both terms off at 500 "
    'of 1000 iterations), `np_2loc_w05` (both at weight 0.5), `np_l4` '
    '(layer4 only); `+cwd`: with `cwd`. Students DeepLabV3 ResNetV1c-18, '
    '1/4 width, 1000 iterations; teachers 1/2 width, 1500. ToyShapes 64x64,'
    ' 6 classes; ToyStreets 128x256, 14 imbalanced classes; 300 / 60 / 200 '
    'train / val / test images. Chosen on ToyShapes val, applied to '
    'ToyStreets as is.')


def _seeds(seeds):
    return ', '.join(map(str, seeds))


def ranked_on_val(val, arms, seeds, strict=True):
    """``arms`` by mean val Δ vs CWD on ``seeds``, and their comparison
    table; strict: ``(None, missing)`` when some (or CWD) lack a seed."""
    missing = [a for a in arms + ['cwd']
               if not set(seeds) <= set(val.get(a, {}))]
    if missing and strict:
        return None, missing
    sub = on_seeds(val, arms + ['cwd'], seeds)
    ranked = sorted(arms, key=lambda a: -pair(sub, a, 'cwd')[1].mean())
    return ranked, comparison_table(sub, [(a, 'cwd') for a in ranked])


def _chosen(val, arms, seeds, what):
    """The comparison table of ``arms`` on ``seeds`` and the choice, or
    why there is none."""
    ranked, table = ranked_on_val(val, arms, seeds)
    if ranked is None:
        return [f'{what} incomplete: no val result on every seed of '
                f'{_seeds(seeds)} for {", ".join(table)}.', '']
    return table + ['', f'{what}, seeds {_seeds(seeds)}: chosen '
                    f'`{ranked[0]}`.', '']


def choice_section(val, explored):
    """The two-stage choice on val: every variant on CHOICE_SEEDS, the TOP
    best by mean Δ vs CWD on STAGE2_SEEDS too."""
    ranked, table = ranked_on_val(val, explored, CHOICE_SEEDS, strict=False)
    sub = on_seeds(val, ranked + ['cwd'], CHOICE_SEEDS)
    sd = np.concatenate([pair(sub, a, 'cwd')[1] for a in ranked]).std(ddof=1)
    return ['### Choice on val: I2CKD variants on top of CWD', '',
            f'Stage 1: every variant on seeds {_seeds(CHOICE_SEEDS)} (sorted '
            f'by mean Δ). Stage 2: the {TOP} best on seeds '
            f'{_seeds(STAGE2_SEEDS)}; the highest mean Δ there went to test. '
            f"One seed's val Δ (60 images) has a standard deviation of "
            f'{sd:.2f} mIoU across all stage-1 runs: weak evidence.', ''
            ] + table + [''] + _chosen(val, ranked[:TOP], STAGE2_SEEDS,
                                       'Stage 2')


def round3_section(val):
    """Round 3 on val: its variants and round 2's choice (on top of CWD)
    by mean Δ vs CWD on the same seeds; the best goes to test."""
    return ["### Round 3 on val: designed after round 2's test results were "
            'seen', '', f"Three changes of `{BEST}+cwd` (round 2's choice, "
            'whose test numbers were then seen), compared with it on val; '
            'the highest mean Δ vs CWD went to test on both datasets.', ''
            ] + _chosen(val, [f'{BEST}+cwd'] + GROUPS['round3'],
                        ROUND3_SEEDS, 'Round 3')


def _dataset(rows, ds):
    """(split -> teacher row, val and test arm -> seed -> mIoU) of ``ds``."""
    return ({r['split']: r for r in rows
             if r['dataset'] == ds and r['arm'] == 'teacher'},
            collect(rows, ds, 'val'), collect(rows, ds, 'test'))


def _splits(teacher):
    return ', '.join(f"{k} {v['mIoU']:.2f}" for k, v in sorted(
        teacher.items()))


def scratch_section(rows):
    """Rounds 1-3: the choice on val and the arms on test, per dataset
    (ToyShapes, the choice's, first); also dataset -> (test, teacher test
    mIoU) to chart."""
    lines, chart = [], {}
    for ds in sorted({r['dataset'] for r in rows},
                     key=lambda d: (d != 'toyshapes', d)):
        teacher, val, test = _dataset(rows, ds)
        lines += [f'## {ds}', '', 'Teacher (1/2 width, 1500 it, seed 0): '
                  f'{_splits(teacher)} mIoU.', '']
        choice = on_seeds(val, val, CHOICE_SEEDS)
        explored = [a for a in GROUPS['explore'] if a != 'cwd'
                    and choice.get(a)]
        if ds == 'toyshapes' and len(explored) > 1 and choice.get('cwd'):
            lines += choice_section(val, explored)
            if any(val.get(a) for a in GROUPS['round3']):
                lines += round3_section(val)
        # variants explored on val only (< 5 seeds) are listed apart, so no
        # conclusion rests on them
        others = {a: v for a, v in test.items() if len(v) < 5}
        test = {a: v for a, v in test.items() if len(v) >= 5}
        alone = [a for a in test if not a.endswith('+cwd')]
        best = BEST + '+cwd'
        pairs = ([(a, 'student') for a in test if a != 'student'] +
                 [(a, 'cwd') for a in test if a.endswith('+cwd')] +
                 [(a, 'cwd') for a in alone if a not in ('cwd', 'student')] +
                 # a round-3 variant vs round 2's choice
                 [(a, best) for a in GROUPS['round3'] if {a, best} <= set(
                     test)] +
                 # other I2CKD variants alone vs the shipped one / literal
                 [(a, 'np') for a in alone if a.startswith('np_')] +
                 [(a, 'literal') for a in alone if a.startswith('np')
                  and 'literal' in test])
        lines += ['### Reported on test', ''] + tables(test, pairs)
        if any(a.endswith('+cwd') for a in others):
            lines += ['Variants explored on val only (2-3 seeds; their test '
                      'numbers were not used for any choice):', ''
                      ] + comparison_table(dict(others, **test), [
                          (a, 'cwd') for a in others if a.endswith('+cwd')]
                      ) + ['']
        chart[ds] = (test, teacher.get('test', {}).get('mIoU'))
    return lines, chart


# ------------------------------------------- report: round 4, gpu, methods
PT_PAIRS = [('cwd', 'student'), ('np', 'student'), ('np_2loc+cwd', 'student'),
            ('np_2loc+cwd', 'cwd'), ('np', 'cwd')]
GOAL = 1.0  # round 4: I2CKD + CWD >= CWD + 1.0 mIoU, interval above zero
METHODS_GOAL = 2  # methods improved (interval above zero) on one proxy


def _head(path, title, text):
    """The rows of a protocol's CSV and the head of its section."""
    rows = read_csv(path)
    return rows, [f'## {title}', '', f'Generated from `benchmarks/'
                  f'{osp.basename(path)}` ({len(rows)} rows) and its {text}',
                  '']


def protocol_section(name, path, curves_plot=None):
    """The section of round 4 (``pretrained``) or of the GPU study
    (``gpu``): arms, the teacher's lead, per-class IoU, the goal."""
    from toy.pretrain import PRETRAIN_SEED
    rows, lines = _head(
        path, 'Round 4: pretrained backbones, fresh test splits' if name ==
        'pretrained' else 'GPU study (benchmarks/gpu_run.sh, part d): '
        'ToyStreets 256x512, R50 -> R18 full width', '`_classes` / `_curves` / '
        f'`_pretrain` files. Protocol `{name}` (benchmarks/README.md): '
        f'ToyNet-pretrained backbones (seed {PRETRAIN_SEED}), fresh splits '
        f'(generator seed {PT_DATA_SEED}), the backbone at 0.1x the learning'
        ' rate (the one choice, made on ToyShapes **val**: two student-alone'
        f" pilots, one seed, 800 iterations); {PROTOCOLS[name]['val_points']}"
        ' validations per run (curves). Arms: `student`, `cwd`, `np`, '
        '`np_2loc+cwd` (above).')
    bbs = read_csv(harness.side_csv(path, 'pretrain'), 'heldout_acc')
    lines += md_table(['pretrained backbone', 'depth', 'width',
                       'steps x batch', 'image', 'ToyNet held-out top-1',
                       'wall s'], [
        [b['role'], b['depth'], b['width'], f"{b['iters']} x "
         f"{b['batch_size']}", b['size'], f"{b['heldout_acc']:.1f} %",
         b['wall_s']] for b in bbs]) + [''] if bbs else []
    classes = read_csv(harness.side_csv(path, 'classes'), 'IoU')
    goals = []
    for ds in sorted({r['dataset'] for r in rows}):
        teacher, val, test = _dataset(rows, ds)
        lines += [f'### {ds}', '']
        if teacher:
            t = teacher.get('test', teacher.get('val'))
            lines += [f"Teacher ({t['iterations']} iterations, seed 0, "
                      f"{t['wall_s']} s): {_splits(teacher)} mIoU.", '']
            if 'student' in test and 'test' in teacher:
                gap = teacher['test']['mIoU'] - _mean(test['student'])
                gap_val = teacher['val']['mIoU'] - _mean(
                    val.get('student', {0: np.nan}))
                lines[-2] += (' Teacher - student alone (mean of '
                              f"{len(test['student'])} seeds): **{gap:.2f} "
                              f'mIoU on test**, {gap_val:.2f} on val (the '
                              'paper: 78.07 - 74.21 = 3.86).')
        iters = {r['iterations'] for r in rows
                 if r['dataset'] == ds and r['arm'] != 'teacher'}
        walls = {a: np.mean([float(w) for w in v.values()]) for a, v in
                 collect(rows, ds, 'test', 'wall_s').items()}
        lines += [f"Students: {', '.join(sorted(iters))} iterations; "
                  'training wall time per run (mean s, 1 thread): '
                  + ', '.join(f'{a} {w:.0f}' for a, w in sorted(walls.items()))
                  + '.', ''] + tables(test, PT_PAIRS)
        lines += ['Per-class test IoU (mean over seeds) and paired per-class'
                  ' Δ (bold: the interval excludes zero):', ''] + class_table(
            classes, ds, GROUPS['round4'], [('np_2loc+cwd', 'cwd'),
                                            ('np', 'student')]) + ['']
        d = pair(test, 'np_2loc+cwd', 'cwd')[1]
        if len(d) > 1:
            m, lo, hi = mean_ci(d)
            goals.append(
                f'- {ds}: np_2loc+cwd vs cwd {m:+.2f} [{lo:+.2f}, {hi:+.2f}]'
                f', {len(d)} seeds: goal (>= +{GOAL:.1f}, interval above '
                f"zero) **{'met' if m >= GOAL and lo > 0 else 'not met'}**.")
    if goals:
        lines += ['### The goal', ''] + goals + ['']
    return lines + plot_curves(path, rows, curves_plot)


def step_medians(csv, dataset):
    """'arm ms, ...': each arm's median step time over its seeds."""
    return ', '.join(f'{a} {np.median(list(v.values())):.0f}'
                     for a, v in sorted(step_times(csv, dataset).items()))


def methods_section(path, curves_plot=None):
    """The ``methods`` protocol's section: each method alone and with
    I2CKD, paired on seeds, the matched-compute arm and the goal."""
    iters = PROTOCOLS['methods']['iters']
    pairs = [(c, m) for m, c in METHODS.items()]
    rows, lines = _head(
        path, 'Methods: I2CKD on top of KD, DIST, MGD and CWD',
        "`_classes` / `_curves` / `_steps` / `_pretrain` files. Round 4's "
        f'protocol, students {iters} iterations. Arms: the shipped toy '
        'configs of `kd` (KLDivergence, tau 1), `dist` (DISTLoss), `mgd` '
        '(MGD on `backbone.layer4`) and `cwd` (on the logits), alone and as '
        '`i2ckd_<method>` (+ I2CKD as shipped); `student`: CE.')
    goals, met = [], False
    for ds in sorted({r['dataset'] for r in rows}):
        teacher, val, test = _dataset(rows, ds)
        lines += [f'### {ds}', '', f'Teacher: {_splits(teacher)} mIoU. '
                  f'Median step time (ms): {step_medians(path, ds)}.', '']
        lines += arm_table(test, 'test') + [
            '', 'With I2CKD vs without, on val (where choices are made) and '
            'on test:', ''] + comparison_table(val, pairs) + [''] + \
            comparison_table(test, pairs + [(a, 'student') for a in test
                                            if a != 'student' and '@' not in
                                            a]) + ['']
        matched = matched_arm(path, ds, iters)
        if not matched:
            continue
        arm, best, ratio = matched
        top = max([c for c in METHODS.values() if c in val],
                  key=lambda c: _mean(val[c]))
        # the matched-compute runs live in their own CSV with a plain and an
        # I2CKD arm of the same start (backbones, teacher) to pair with
        mpath = harness.side_csv(path, 'matched')
        mteacher, _, mt = _dataset(read_csv(mpath), ds)
        lines += [f'Matched compute: `{best}` (the best plain method on val)'
                  f' for {arm.split("@")[1]} iterations = {iters} x '
                  f'{ratio:.2f}, the step-time ratio of `{METHODS[best]}`; '
                  f'the best combination on val is `{top}`.', '']
        if arm in mt:
            mpairs = [(top, arm), (METHODS[best], arm), (arm, best),
                      (METHODS[best], best)] + [
                (top, a) for a in sorted(mt)
                if a != arm and a.startswith(best + '@')]
            lines += [
                f'Its runs and the runs they pair with '
                f'(`{osp.basename(mpath)}`) have their own pretrained '
                f'backbones and teacher (teacher {_splits(mteacher)} mIoU),'
                ' so they pair only with each other; median step time there '
                f'(ms): {step_medians(mpath, ds)}.', ''] + tables(
                    mt, list(dict.fromkeys(mpairs)))
        else:
            lines += [f'`{arm}` not run yet.', '']
        better = [m for m in METHODS if above_zero(test, METHODS[m], m)]
        beats = above_zero(mt, top, arm) if arm in mt and top in mt else None
        met = met or len(better) >= METHODS_GOAL and bool(beats)
        goals.append(
            f'- {ds}: I2CKD better (test interval above zero) for '
            f'{len(better)} of {len(METHODS)} methods'
            f"{' (' + ', '.join(better) + ')' if better else ''}; `{top}` vs "
            'the matched-compute arm: ' + ('not run yet' if beats is None else
                                           'better' if beats else
                                           'not better') + '.')
    if goals:
        lines += ['### The goal', ''] + goals + ['', (
            f'Goal (>= {METHODS_GOAL} methods improved and the best '
            'combination above the matched-compute arm, on one proxy): '
            + ('**met**.' if met else '**not met**.')), '']
    return lines + plot_curves(path, rows, curves_plot, GROUPS['methods'],
                               'the methods, mean over seeds (band: range)')


# ------------------------------------------------------------------ report
def cmd_report(args):
    """``report``: the markdown report and its charts from the CSV files."""
    rows = read_csv(args.csv)
    lines = ['# I2CKD accuracy study on two toy CPU proxies', '',
             f'Generated by `python benchmarks/accuracy_study.py report` from '
             f'`benchmarks/{osp.basename(args.csv)}` ({len(rows)} rows). '
             'Δ = paired difference (same seed, same start); 95 % CI = t '
             'interval of the mean Δ; "better" / "worse" only where the '
             'interval excludes zero, "tied" otherwise.', '', ARMS_TEXT, '']
    scratch, chart = scratch_section(rows)
    lines += scratch
    for name, chart_name in (('pretrained', '_pretrained_curves'),
                             ('gpu', None), ('methods', '_methods_curves')):
        path = PROTOCOLS[name]['csv']
        out = chart_name and osp.join(args.images,
                                      f'accuracy_study{chart_name}.png')
        if args.csv == CSV and osp.isfile(path):
            lines += (methods_section(path, out) if name == 'methods'
                      else protocol_section(name, path, out))
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    if chart:
        plot(chart, osp.join(args.images, 'accuracy_study.png'))


def _figure(path, keys, width, height, draw):
    """A row of panels (Agg), ``draw(axes, key)`` on each, saved at path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys),
                                                    height), dpi=110,
                             squeeze=False)
    for ax, key in zip(axes[0], keys):
        draw(ax, key)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot(chart, path):
    """Test mIoU per arm and dataset: mean ± std, the seeds as dots."""
    import matplotlib.pyplot as plt

    def draw(ax, ds):
        results, teacher = chart[ds]
        arms = sorted(results, key=lambda a: _mean(results[a]))
        means = [_mean(results[a]) for a in arms]
        ax.bar(arms, means, yerr=[np.std(list(results[a].values()), ddof=1)
                                  if len(results[a]) > 1 else 0
                                  for a in arms], capsize=4, color='#4c72b0')
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
    _figure(path, list(chart), 6.5, 3.8, draw)


def plot_curves(path, rows, out, arms=('student', 'np', 'cwd', 'np_2loc+cwd'),
                title='pretrained starts, mean over seeds (band: range)'):
    """Chart the ``_curves`` file of ``path`` at ``out`` (val mIoU vs
    iteration per dataset: mean over seeds, the seeds' range as a band, the
    teacher's final val mIoU dashed); the report lines showing it."""
    curves = read_csv(harness.side_csv(path, 'curves'))
    if not (out and curves):
        return []
    colours = {'student': '#7f7f7f', 'cwd': '#4c72b0', 'np': '#55a868',
               'np_2loc+cwd': '#c44e52'}

    def draw(ax, ds):
        for arm in arms:
            pts = {}
            for r in curves:
                if (r['dataset'], r['arm']) == (ds, arm):
                    pts.setdefault(int(r['iteration']), []).append(r['mIoU'])
            if pts:
                it, n = sorted(pts), min(len(v) for v in pts.values())
                line, = ax.plot(it, [np.mean(pts[i]) for i in it],
                                marker='o', ms=3, color=colours.get(arm),
                                label=f'{arm} ({n} seeds)')
                ax.fill_between(it, [min(pts[i]) for i in it],
                                [max(pts[i]) for i in it], alpha=0.15,
                                color=line.get_color())
        teacher = _dataset(rows, ds)[0].get('val')
        if teacher:
            ax.axhline(teacher['mIoU'], color='k', ls='--', lw=1,
                       label='teacher (end)')
        ax.set(xlabel='iteration', ylabel='val mIoU (%)',
               title=f'{ds}: {title}')
        ax.legend(loc='lower right', fontsize=8)
    _figure(out, sorted({r['dataset'] for r in curves}), 6.2, 3.9, draw)
    return [f'![val mIoU vs iteration](../docs/images/{osp.basename(out)})',
            '']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r, q = sub.add_parser('run'), sub.add_parser('report')
    r.add_argument('--dataset', choices=('toyshapes', 'toystreets'),
                   default='toyshapes')
    r.add_argument('--work-dir', help='default work_dirs/accuracy_study '
                   '(work_dirs/accuracy_study_P with --protocol P)')
    r.add_argument('--arms', nargs='+', default=['final'],
                   help=f'arms or groups {sorted(GROUPS)}: student, cwd, '
                   f'{sorted(VARIANTS)} (+cwd adds CWD), a config role '
                   '(methods), <arm>@N (N iterations), matched')
    r.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    r.add_argument('--best', default=BEST, help='BEST in group final')
    r.add_argument('--jobs', type=int, default=2)
    r.add_argument('--protocol', choices=sorted(PROTOCOLS), default='scratch')
    r.add_argument('--csv', help='write the rows there instead')
    r.add_argument('--tiny', action='store_true',
                   help='a dry run at tiny size on the CPU')
    q.add_argument('--csv', default=CSV)
    q.add_argument('--out', default=osp.join(ROOT, 'benchmarks',
                                             'accuracy_study.md'))
    q.add_argument('--images', default=osp.join(ROOT, 'docs', 'images'),
                   help='where the charts go')
    args = p.parse_args(argv)
    if args.cmd == 'report':
        return cmd_report(args)
    if args.work_dir is None:
        args.work_dir = 'work_dirs/accuracy_study' + (
            '' if args.protocol == 'scratch' else f'_{args.protocol}')
    return cmd_run(args, TINY if args.tiny else None)


if __name__ == '__main__':
    main()

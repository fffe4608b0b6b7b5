"""Paired-seed accuracy study of I2CKD on two toy CPU proxies.

``run`` trains the missing runs of arms x seeds under a protocol (each
finished run appends its val and test mIoU to the protocol's CSV; a run in
the CSV is skipped, so a command resumes); ``report`` writes
``accuracy_study.md`` and the charts from the CSV files only. Every arm
trains the same student config from the same seed (I2CKDDistill keeps the
teacher and connectors off the student's random numbers), so arms differ
only in their distillation losses; choices are made on val, reported
numbers are on test. The commands that made the committed CSV files and the
protocol in full: ``benchmarks/README.md``.

A new arm is a ``VARIANTS`` entry (config text on the I2CKD or I2CKD + CWD
config) or a case of :func:`arm_spec`; a new protocol a ``PROTOCOLS`` entry.
"""
import argparse
import glob
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import harness
from harness import md_table, mean_ci, paired, read_csv, verdict
from toy import toy_configs

ROOT = harness.ROOT
CSV = osp.join(ROOT, 'benchmarks', 'accuracy_study.csv')
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
    # --protocol methods: each method users run, alone and with the shipped
    # I2CKD (the toy configs of both, as shipped)
    'methods': ['student', 'kd', 'i2ckd_kd', 'dist', 'i2ckd_dist', 'mgd',
                'i2ckd_mgd', 'cwd', 'i2ckd_cwd'],
}
#: The arms of GROUPS['methods'] that are plain methods, with their I2CKD
#: combination.
METHODS = {'kd': 'i2ckd_kd', 'dist': 'i2ckd_dist', 'mgd': 'i2ckd_mgd',
           'cwd': 'i2ckd_cwd'}


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


# ---------------------------------------------------------------- protocols
#: Fine-tuning a pretrained backbone: 0.1x the learning rate there (the
#: parameter names hold 'backbone' in the student alone and in I2CKDDistill's
#: student, 'architecture.backbone.'; connectors and heads keep 1x).
BACKBONE_LR = 'optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult=0.1'
PT_DATA_SEED = 16

#: protocol -> what its runs need: ``csv`` (rows; with ``per_class``, also
#: ``_classes`` / ``_curves`` beside it); ``data_seed`` and ``data``
#: (generator arguments per dataset); ``pretrain`` (role -> ToyNet
#: pretraining options of its backbone, the checkpoint
#: ``<work-dir>/pretrain/<role>_r<depth>w<width>.pth`` shared by the
#: datasets; None: random starts); ``iters`` / ``teacher_iters``;
#: ``val_points`` (val evaluations per run: the curves); ``configs`` (role ->
#: config per dataset; None: the toy configs); ``options`` / ``train_args``
#: (more --cfg-options / tools/train.py arguments); ``layer4`` (student,
#: teacher channels of the second I2CKD location).
PROTOCOLS = {
    # rounds 1-3: random starts, the toy pair (teacher 1/2, student 1/4
    # width) at the toy configs' schedules
    'scratch': dict(
        csv=CSV, data_seed=0, data=dict(toyshapes={}, toystreets={}),
        pretrain=None, iters=STUDENT_ITERS, teacher_iters=TEACHER_ITERS,
        val_points=None, configs=None, layer4=(128, 256)),
    # round 4 on CPU: pretrained starts, fresh splits, curves and per-class
    # IoU; students 400 iterations (sized to the CPU time available: 5
    # seeds x 4 arms x 2 datasets on 2 shared cores), the backbone at 0.1x
    # the learning rate (chosen on ToyShapes val, one seed, student alone:
    # 800 iterations gave 18.36 val mIoU at 1x, 47.77 at 0.1x by iteration
    # 400: at 1x AdamW 3e-3 wipes the pretrained features)
    'pretrained': dict(
        csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_pretrained.csv'),
        data_seed=PT_DATA_SEED, data=dict(toyshapes={}, toystreets={}),
        pretrain=dict(student=dict(iters=1500, batch_size=64, size=64),
                      teacher=dict(iters=1500, batch_size=64, size=64)),
        iters=400, teacher_iters=1500, val_points=4, per_class=True,
        configs=None, options=[BACKBONE_LR], layer4=(128, 256)),
    # the methods study: round 4's data, backbones and teachers; students
    # 600 iterations (round 4's students still rose at 400); arms are the
    # shipped toy configs (``config_arms``); ``<arm>@<iters>`` trains an arm
    # for other iterations (the matched-compute arm)
    'methods': dict(
        csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_methods.csv'),
        data_seed=PT_DATA_SEED, data=dict(toyshapes={}, toystreets={}),
        pretrain=dict(student=dict(iters=1500, batch_size=64, size=64),
                      teacher=dict(iters=1500, batch_size=64, size=64)),
        iters=600, teacher_iters=1500, val_points=4, per_class=True,
        configs=None, options=[BACKBONE_LR], layer4=(128, 256),
        config_arms=True),
    # benchmarks/gpu_study.sh: ToyStreets 256x512, R50 -> R18 full width,
    # sized to finish in <= 8 min on one H200 (an estimate from
    # results_gpu.md): backbones 800 steps x 96 images (64x64, rendered on
    # the CPU), teacher 600 and students 500 iterations with AMP, 6 runs on
    # the GPU at once
    'gpu': dict(
        csv=osp.join(ROOT, 'benchmarks', 'accuracy_study_gpu.csv'),
        data_seed=PT_DATA_SEED,
        data=dict(toystreets=dict(height=256, width=512, num_train=400)),
        pretrain=dict(student=dict(iters=800, batch_size=96, size=64,
                                   device='cuda', amp=True),
                      teacher=dict(iters=800, batch_size=96, size=64,
                                   device='cuda', amp=True)),
        iters=500, teacher_iters=600, val_points=4, per_class=True,
        train_args=['--amp'], options=[BACKBONE_LR], layer4=(512, 2048),
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
    options=['train_dataloader.batch_size=2'] + [
        f'{split}_dataloader.{opt}' for split in ('train', 'val', 'test')
        for opt in ('num_workers=0', 'persistent_workers=False')])


def protocol(name, dataset, **overrides):
    """The settings of ``PROTOCOLS[name]`` for ``dataset`` (config paths
    resolved), with ``overrides`` (e.g. a dry run's sizes) applied."""
    if dataset not in PROTOCOLS[name]['data']:
        raise ValueError(f'protocol {name!r} has no dataset {dataset!r}; '
                         f'it has {sorted(PROTOCOLS[name]["data"])}')
    p = _merged(PROTOCOLS[name], overrides)
    p['options'] = (list(PROTOCOLS[name].get('options', [])) +
                    list(overrides.get('options', [])))
    if PROTOCOLS[name]['pretrain'] is None:
        p['pretrain'] = None  # a dry run pretrains what its protocol does
    configs = (toy_configs(dataset) if p['configs'] is None else
               {k: osp.join(ROOT, 'configs', 'toy', v)
                for k, v in p['configs'][dataset].items()})
    return dict(p, name=name, dataset=dataset, configs=configs,
                data=p['data'][dataset])


def protocol_arm(name, proto):
    """(config path, extra config text) of an arm under ``proto``: as
    :func:`arm_spec`, the second location sized for the protocol's layer4
    channels (student, teacher); with ``config_arms`` an arm named as a
    config role (``kd``, ``i2ckd_kd``, ...) is that config as shipped.
    ``<arm>@<iters>`` is the arm itself (its iterations: :func:`arm_iters`).
    """
    name = name.split('@')[0]
    if proto.get('config_arms') and name in proto['configs'] \
            and name != 'teacher':
        return proto['configs'][name], ''
    cfg, extra = arm_spec(name, proto['configs'])
    variant = name[:-4] if name.endswith('+cwd') else name
    if variant == 'np_2loc' and tuple(proto['layer4']) != (128, 256):
        extra = _i2ckd(second_location(*proto['layer4']), **NP)
    return cfg, extra


def arm_iters(arm, proto):
    """Training iterations of ``arm``: ``N`` for ``<arm>@N``, else the
    protocol's."""
    return int(arm.split('@')[1]) if '@' in arm else proto['iters']


def init_options(prefix, ckpt):
    """--cfg-options starting the backbone at ``prefix`` (``model`` or
    ``model.architecture``) from the ``Pretrained`` checkpoint ``ckpt``."""
    return [f'{prefix}.backbone.init_cfg.type=Pretrained',
            f'{prefix}.backbone.init_cfg.checkpoint={ckpt}']


PRETRAIN_FIELDS = ['role', 'depth', 'width', 'iters', 'batch_size', 'size',
                   'seed', 'heldout_acc', 'wall_s']


def backbone_path(wd, proto, role):
    """Where the pretrained backbone of ``role`` goes (by depth and width);
    call it outside threads (MMEngine's config parsing is not
    thread-safe)."""
    from mmengine.config import Config
    bb = Config.fromfile(proto['configs'][role]).model.backbone
    return osp.join(wd, 'pretrain',
                    f"{role}_r{bb['depth']}w{bb['base_channels']}.pth")


def ensure_pretrained(ckpt, proto, role):
    """The pretrained backbone checkpoint of ``role`` (``student`` /
    ``teacher``), pretrained now if missing (tools/pretrain_toy_backbone.py,
    one thread on a CPU); one ``_pretrain`` CSV row per role from its meta
    (held-out ToyNet accuracy, seconds)."""
    from toy.pretrain import load_meta
    cfg = proto['configs'][role]
    if not osp.isfile(ckpt):
        opts = proto['pretrain'][role]
        args = [cfg, ckpt, '--model', role]
        for k, v in opts.items():
            if k != 'amp':
                args += [f"--{k.replace('_', '-')}", str(v)]
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


STEP_FIELDS = ['dataset', 'arm', 'seed', 'step_ms']


def record_step_ms(proto, run_dir, arm, seed):
    """The median training-iteration time of a finished run (MMEngine's
    logged ``time``: data, forward, backward and optimizer step; the
    validations left out) in the protocol's ``_steps`` CSV, once. The
    matched-compute arm scales iterations by the ratio of these times."""
    path = harness.side_csv(proto['csv'], 'steps')
    if any(r['dataset'] == proto['dataset'] and r['arm'] == arm
           and r['seed'] == seed for r in read_csv(path, 'step_ms')):
        return
    times = [json.loads(line)['time'] for f in glob.glob(osp.join(
        run_dir, '*', 'vis_data', 'scalars.json')) for line in open(f)
        if '"loss"' in line]
    if times:
        harness.append_csv(path, STEP_FIELDS, [dict(
            dataset=proto['dataset'], arm=arm, seed=seed,
            step_ms=f'{1000 * np.median(times):.1f}')])


def run(proto, wd, arm, seed, teacher=None, backbone=None, spec=None):
    """One run of ``proto`` (``arm``: ``'teacher'`` or a study arm; the
    teacher checkpoint ``teacher``, the pretrained ``backbone``), skipped
    when the CSV has it; a teacher in the CSV whose checkpoint is not here
    (a study resumed on a new machine) is trained again, the arms still to
    run need it. ``spec``: the arm's (config, extra text) if resolved
    already (in the main thread). Returns (arm, seed, status)."""
    is_teacher = arm == 'teacher'
    run_dir = osp.join(wd, 'teacher') if is_teacher else osp.join(
        wd, 'runs', arm, f'seed{seed}')
    iters = proto['teacher_iters'] if is_teacher else arm_iters(arm, proto)
    if harness.done(read_csv(proto['csv']), proto['dataset'], arm, seed) \
            and not (is_teacher and not osp.isfile(
                osp.join(run_dir, f'iter_{iters}.pth'))):
        if proto.get('config_arms') and not is_teacher:
            record_step_ms(proto, run_dir, arm, seed)
        return arm, seed, 'in the CSV already'
    if is_teacher:
        cfg, extra, opts = proto['configs']['teacher'], '', []
    else:
        cfg, extra = spec or protocol_arm(arm, proto)
        opts = ([] if arm.split('@')[0] == 'student' else
                [f'model.teacher_ckpt={teacher}'])
    if backbone:
        opts = init_options('model' if arm.split('@')[0] in ('teacher', 'student') else
                            'model.architecture', backbone) + opts
    status = harness.run_arm(proto, run_dir, arm, seed, cfg, extra, opts,
                             iters)
    if proto.get('config_arms'):
        record_step_ms(proto, run_dir, arm, seed)
    return arm, seed, status


def matched_arm(csv, dataset, iters):
    """The matched-compute arm of ``dataset``: the plain method (``METHODS``)
    with the highest mean val mIoU, trained for the time of its I2CKD
    combination, as ``(arm, method, ratio)`` with ``arm`` =
    ``<method>@N``, N = ``iters`` x ratio, the median over seeds of the
    combination's step time / the method's (``_steps`` CSV); None until
    every plain method has val rows and both have step times."""
    val = collect(read_csv(csv), dataset, 'val')
    if not all(m in val for m in METHODS):
        return None
    best = max(METHODS, key=lambda m: np.mean(list(val[m].values())))
    steps = {}
    for r in read_csv(harness.side_csv(csv, 'steps'), 'step_ms'):
        if r['dataset'] == dataset:
            steps.setdefault(r['arm'], {})[r['seed']] = r['step_ms']
    combo = steps.get(METHODS[best], {})
    seeds = sorted(set(steps.get(best, {})) & set(combo))
    if not seeds:
        return None
    ratio = float(np.median([combo[s] / steps[best][s] for s in seeds]))
    return f'{best}@{int(round(iters * ratio))}', best, ratio


def cmd_run(args, overrides=None):
    """``run``: pretrained backbones (if the protocol has them), data,
    teacher, then the arms, ``--jobs`` at once, seed-major (pairs complete
    early)."""
    proto = protocol(args.protocol, args.dataset, **(overrides or {}))
    if args.csv:
        proto['csv'] = osp.abspath(args.csv)
    root = osp.abspath(args.work_dir)
    wd = osp.join(root, args.dataset)
    names = list(dict.fromkeys(n.replace('BEST', args.best) for a in args.arms
                               for n in GROUPS.get(a, [a])))
    if 'matched' in names:  # resolved from the methods arms' rows
        m = matched_arm(proto['csv'], args.dataset, proto['iters'])
        if m is None:
            raise SystemExit(
                f'matched: no matched-compute arm for {args.dataset} yet: '
                'it needs the val rows of every plain method and the step '
                'times of the best one and its I2CKD combination (run '
                '--arms methods first)')
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


# ----------------------------------------------------------------- report


def pair(results, a, b):
    """(seeds, a - b) of two arms in ``results`` (arm -> seed -> mIoU)."""
    return paired(results.get(a, {}), results.get(b, {}))


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
    for arm, by_seed in sorted(results.items(),
                               key=lambda kv: np.mean(list(kv[1].values()))):
        v = np.array(list(by_seed.values()))
        std = v.std(ddof=1) if len(v) > 1 else float('nan')
        rows.append([arm, len(v), f'{v.mean():.2f} ± {std:.2f}', ', '.join(
            f'{s}: {m:.2f}' for s, m in sorted(by_seed.items()))])
    return md_table(['arm', 'seeds', f'{split} mIoU mean ± std', 'per seed'],
                    rows)


def collect(rows, dataset, split):
    """arm -> seed -> mIoU of the study arms (not the teacher)."""
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
    return pair(on_seeds(results, (arm, 'cwd'), seeds), arm, 'cwd')[1].mean()


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
    deltas = np.concatenate([pair(sub, a, 'cwd')[1] for a in ranked])
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
    rows = read_csv(args.csv)
    # the dataset the choice was made on first
    datasets = sorted(dict.fromkeys(r['dataset'] for r in rows),
                      key=lambda d: d != args.choice_dataset)
    lines = ['# I2CKD accuracy study on two toy CPU proxies', '',
             f'Generated by `python benchmarks/accuracy_study.py report` from '
             f'`benchmarks/{osp.basename(args.csv)}` ({len(rows)} rows). '
             'Δ = paired difference (same seed, same start); 95 % CI = t '
             'interval of the mean Δ; "better" / "worse" only where the '
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
    path = PROTOCOLS['methods']['csv']
    if args.csv == CSV and osp.isfile(path):
        lines += methods_section(path, args.methods_curves_plot)
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    if args.plot and chart:
        plot(chart, args.plot)


def figure(panels, width, height):
    """A matplotlib figure (Agg) of ``panels`` axes in a row."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height),
                             dpi=110, squeeze=False)
    return fig, axes[0]


def save(fig, path):
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path)


def plot(chart, path):
    """Test mIoU per arm and dataset: mean ± std, the seeds as dots."""
    import matplotlib.pyplot as plt
    fig, axes = figure(len(chart), 6.5, 3.8)
    for ax, (ds, (results, teacher)) in zip(axes, chart.items()):
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
    save(fig, path)


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
#: I2CKD + CWD >= CWD + 1.0 mIoU, interval above zero
GOAL = 1.0


def goal_check(test, best='np_2loc+cwd', ref='cwd'):
    """(mean Δ, lo, hi, seeds, met) of ``best`` vs ``ref`` against GOAL."""
    _, d = pair(test, best, ref)
    if len(d) < 2:
        return None
    m, lo, hi = mean_ci(d)
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
    rows = []
    for c in by[arms[0]]:
        kind = CLASS_KINDS.get(c) if ds == 'toystreets' else None
        cells = [f'{c} ({kind})' if kind else c]
        for a in arms:
            v = np.array([x for x in by[a].get(c, {}).values()
                          if not np.isnan(x)])
            cells.append(f'{v.mean():.1f}' if len(v) else 'n/a')
        for a, b in pairs:
            _, d = paired(by.get(a, {}).get(c, {}), by.get(b, {}).get(c, {}))
            if len(d) < 2:
                cells.append('n/a')
                continue
            m, lo, hi = mean_ci(d)
            mark = '**' if lo > 0 or hi < 0 else ''
            cells.append(f'{mark}{m:+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}')
        rows.append(cells)
    return md_table(['class'] + arms + [f'Δ {a} vs {b} [95 % CI]'
                                        for a, b in pairs], rows)


def protocol_section(name, path, curves_plot=None):
    """The report section of a round-4 protocol CSV (``pretrained``: the
    CPU study; ``gpu``: benchmarks/gpu_study.sh)."""
    from toy.pretrain import PRETRAIN_SEED
    rows = read_csv(path)
    classes = read_csv(harness.side_csv(path, 'classes'), 'IoU')
    curves = read_csv(harness.side_csv(path, 'curves'))
    backbones = read_csv(harness.side_csv(path, 'pretrain'), 'heldout_acc')
    p = PROTOCOLS[name]
    title = ('Round 4: pretrained backbones, fresh test splits'
             if name == 'pretrained' else
             'GPU study (benchmarks/gpu_study.sh): ToyStreets 256x512, '
             'R50 -> R18 full width')
    lines = [f'## {title}', '',
             f'Generated from `benchmarks/{osp.basename(path)}` '
             f'({len(rows)} rows) and its `_classes` / `_curves` / '
             '`_pretrain` files. Protocol: both backbones start '
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
             'iterations by the CPU time available. Every arm and the '
             'teacher '
             f"validated {p['val_points']} times during training (curves); "
             'per-class IoU on test. Arms: `student` alone, `cwd`, `np` '
             '(the shipped I2CKD at the bottleneck) and `np_2loc+cwd` (the '
             'recommended I2CKD + CWD: I2CKD at the bottleneck and '
             '`backbone.layer4`, with CWD).', '']
    if backbones:
        lines += md_table(
            ['pretrained backbone', 'depth', 'width', 'steps x batch',
             'image', 'ToyNet held-out top-1', 'wall s'],
            [[b['role'], b['depth'], b['width'],
              f"{b['iters']} x {b['batch_size']}", b['size'],
              f"{b['heldout_acc']:.1f} %", b['wall_s']] for b in backbones]
        ) + ['']
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

#: The methods study's goal: I2CKD improves at least this many of the four
#: methods (test interval above zero) on at least one proxy.
METHODS_GOAL = 2


def methods_section(path, curves_plot=None):
    """The report section of the ``methods`` protocol: each method alone
    and with I2CKD, paired on seeds, and the matched-compute arm."""
    rows = read_csv(path)
    steps = read_csv(harness.side_csv(path, 'steps'), 'step_ms')
    p = PROTOCOLS['methods']
    lines = ['## Methods: I2CKD on top of KD, DIST, MGD and CWD', '',
             f'Generated from `benchmarks/{osp.basename(path)}` ({len(rows)}'
             ' rows) and its `_classes` / `_curves` / `_steps` / `_pretrain`'
             " files. Round 4's protocol (pretrained backbones, the splits "
             f'of generator seed {PT_DATA_SEED}, backbone at 0.1x the '
             f"learning rate, teacher 1500 iterations), students {p['iters']}"
             " iterations. Every arm is a shipped toy config as it is: "
             '`kd` (KLDivergence on the logits, tau 1), `dist` (DISTLoss on '
             'the logits as pixel rows), `mgd` (MGD on `backbone.layer4`), '
             '`cwd` (ChannelWiseDivergence on the logits), each alone and '
             '`i2ckd_<method>` = with the shipped I2CKD term at the '
             'bottleneck; `student` = CE alone. No option was tuned on these '
             'splits. Matched compute: the plain method with the best mean '
             'val mIoU, trained for more iterations, in proportion to the '
             'median step time of its I2CKD combination over its own '
             '(`_steps`: MMEngine\'s logged iteration time, 1 thread).', '']
    goals = []
    for ds in sorted(dict.fromkeys(r['dataset'] for r in rows)):
        val, test = collect(rows, ds, 'val'), collect(rows, ds, 'test')
        teacher = {r['split']: r['mIoU'] for r in rows
                   if r['dataset'] == ds and r['arm'] == 'teacher'}
        ms = {}
        for r in steps:
            if r['dataset'] == ds:
                ms.setdefault(r['arm'], []).append(r['step_ms'])
        lines += [f'### {ds}', '', 'Teacher: ' + ', '.join(
            f'{k} {v:.2f}' for k, v in sorted(teacher.items())) +
            ' mIoU. Median step time (ms): ' + ', '.join(
                f'{a} {np.median(v):.0f}' for a, v in sorted(ms.items())) +
            '.', '']
        lines += arm_table(test, 'test') + ['']
        pairs = [(METHODS[m], m) for m in METHODS]
        lines += ['With I2CKD vs without, on val (where choices are made) '
                  'and on test:', '']
        lines += comparison_table(val, pairs) + [''] + comparison_table(
            test, pairs + [(a, 'student') for a in test
                           if a != 'student' and '@' not in a]) + ['']
        better = [m for m in METHODS if len(pair(test, METHODS[m], m)[1]) > 1
                  and mean_ci(pair(test, METHODS[m], m)[1])[1] > 0]
        m = matched_arm(path, ds, p['iters'])
        if m:
            arm, best, ratio = m
            combos = [c for c in METHODS.values() if c in val]
            top = max(combos, key=lambda c: np.mean(list(val[c].values())))
            lines += [f'Matched compute: `{best}` (the best plain method on '
                      f'val) for {arm.split("@")[1]} iterations = '
                      f"{p['iters']} x {ratio:.2f}, the step-time ratio of "
                      f'`{METHODS[best]}`; the best combination on val is '
                      f'`{top}`.', '']
            if arm in test:
                lines += comparison_table(test, list(dict.fromkeys(
                    [(METHODS[best], arm), (top, arm), (arm, best)]))) + ['']
                d = pair(test, top, arm)[1]
                beats = len(d) > 1 and mean_ci(d)[1] > 0
            else:
                lines += [f'`{arm}` not run yet.', '']
                beats = None
            goals.append((ds, better, top, beats))
    if goals:
        lines += ['### The goal', '']
        for ds, better, top, beats in goals:
            lines.append(
                f'- {ds}: I2CKD better (test interval above zero) for '
                f'{len(better)} of {len(METHODS)} methods'
                f"{' (' + ', '.join(better) + ')' if better else ''}; "
                f'`{top}` vs the matched-compute arm: ' +
                ('not run yet' if beats is None else
                 'better' if beats else 'not better') + '.')
        met = any(len(b) >= METHODS_GOAL and t for _, b, _, t in goals)
        lines += ['', f'Goal (>= {METHODS_GOAL} methods improved and the '
                  'best combination above the matched-compute arm, on one '
                  'proxy): ' + ('**met**.' if met else '**not met**.'), '']
    curves = read_csv(harness.side_csv(path, 'curves'))
    if curves_plot and curves:
        plot_curves(curves, rows, curves_plot, GROUPS['methods'],
                    'the methods, mean over seeds (band: range)')
        lines += [f'![val mIoU vs iteration](../docs/images/'
                  f'{osp.basename(curves_plot)})', '']
    return lines


def plot_curves(curves, rows, path, arms=('student', 'np', 'cwd',
                                         'np_2loc+cwd'),
                title='pretrained starts, mean over seeds (band: range)'):
    """Val mIoU vs iteration, every arm in one panel per dataset: mean over
    seeds (line) and the seeds' range (band); the teacher's final val mIoU
    dashed."""
    datasets = sorted(dict.fromkeys(r['dataset'] for r in curves))
    fig, axes = figure(len(datasets), 6.2, 3.9)
    colours = {'student': '#7f7f7f', 'cwd': '#4c72b0', 'np': '#55a868',
               'np_2loc+cwd': '#c44e52'}
    for ax, ds in zip(axes, datasets):
        for arm in arms:
            pts = {}
            for r in curves:
                if r['dataset'] == ds and r['arm'] == arm:
                    pts.setdefault(int(r['iteration']), []).append(r['mIoU'])
            if not pts:
                continue
            it = sorted(pts)
            mean = [np.mean(pts[i]) for i in it]
            n = min(len(v) for v in pts.values())
            line, = ax.plot(it, mean, marker='o', ms=3,
                            color=colours.get(arm), label=f'{arm} ({n} seeds)')
            ax.fill_between(it, [min(pts[i]) for i in it],
                            [max(pts[i]) for i in it], alpha=0.15,
                            color=line.get_color())
        t = [r['mIoU'] for r in rows if r['dataset'] == ds
             and r['arm'] == 'teacher' and r['split'] == 'val']
        if t:
            ax.axhline(t[0], color='k', ls='--', lw=1, label='teacher (end)')
        ax.set_xlabel('iteration')
        ax.set_ylabel('val mIoU (%)')
        ax.set_title(f'{ds}: {title}')
        ax.legend(loc='lower right', fontsize=8)
    save(fig, path)


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
    r.add_argument('--protocol', choices=sorted(PROTOCOLS), default='scratch',
                   help='scratch: rounds 1-3 (default); pretrained: round 4 '
                   f'(pretrained starts, fresh splits, seed {PT_DATA_SEED}, '
                   'curves and per-class IoU, own CSV files); gpu: '
                   'benchmarks/gpu_study.sh')
    r.add_argument('--csv', help='write the rows there instead')
    r.add_argument('--tiny', action='store_true',
                   help='a dry run at tiny size (a few iterations and '
                   'images, CPU) to check the pipeline and time it')
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
    q.add_argument('--methods-curves-plot', default=osp.join(
        ROOT, 'docs', 'images', 'accuracy_study_methods_curves.png'),
        help='the methods study: val mIoU vs iteration of every arm')
    args = p.parse_args(argv)
    if args.cmd == 'run' and args.work_dir is None:
        args.work_dir = 'work_dirs/accuracy_study' + (
            '' if args.protocol == 'scratch' else f'_{args.protocol}')
    if args.cmd == 'run':
        return cmd_run(args, TINY if args.tiny else None)
    cmd_report(args)


if __name__ == '__main__':
    main()

"""benchmarks/accuracy_study.py: the statistics, the verdict wording, the
CSV bookkeeping that makes the study resumable, and the arm definitions."""
import os.path as osp

import numpy as np
import pytest

import accuracy_study as study
import harness

ROOT = harness.ROOT


def test_comparison_table_pairs_by_seed():
    results = {'a': {0: 40.0, 1: 41.2, 2: 42.4, 9: 99.0},
               'b': {0: 39.0, 1: 40.0, 2: 41.0}}
    line = study.comparison_table(results, [('a', 'b')])[2]
    # seed 9 has no partner; differences 1.0, 1.2, 1.4: mean 1.20, sd 0.2,
    # half width 4.3027 * 0.2 / sqrt(3) = 0.497
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[:5] == ['a', 'b', '3', '+1.20', '[+0.70, +1.70]']
    assert cells[5] == '3/3' and cells[6] == 'better'
    # 1, 1, 2: all wins, but the interval [-0.10, +2.77] holds zero
    results['a'] = {0: 40.0, 1: 41.0, 2: 43.0}
    line = study.comparison_table(results, [('a', 'b')])[2]
    assert line.endswith('| 3/3 | tied |')


def test_csv_rows_make_a_run_done(tmp_path):
    csv_path = str(tmp_path / 'runs.csv')

    def done(dataset):
        return harness.done(harness.read_csv(csv_path), dataset, 'cwd', 0)

    assert not done('toyshapes')
    base = dict(dataset='toyshapes', arm='cwd', seed=0, iterations=1000,
                wall_s=100)
    harness.append_csv(csv_path, harness.FIELDS,
                       [dict(base, split='val', mIoU='37.00')])
    assert not done('toyshapes')  # test still missing
    harness.append_csv(csv_path, harness.FIELDS,
                       [dict(base, split='test', mIoU='35.00')])
    assert done('toyshapes') and not done('toystreets')
    rows = harness.read_csv(csv_path)
    assert [r['mIoU'] for r in rows] == [37.0, 35.0]
    assert list(rows[0]) == harness.FIELDS


def test_arms_resolve_to_configs_and_options():
    configs = dict(student='S', i2ckd='I', i2ckd_cwd='IC')
    assert study.arm_spec('student', configs) == ('S', '')
    cfg, extra = study.arm_spec('cwd', configs)
    assert cfg == 'IC' and 'loss_weight=0.0' in extra
    cfg, extra = study.arm_spec('np_w3_batch+cwd', configs)
    assert cfg == 'IC'
    for opt in ("normalize=True", "loss_weight=3.0",
                "prototype_scope='batch'"):
        assert opt in extra
    cfg, extra = study.arm_spec('literal', configs)
    assert cfg == 'I' and 'margin=1.0' in extra and 'normalize=False' in extra
    with pytest.raises(KeyError, match='unknown arm'):
        study.arm_spec('nope', configs)


def test_two_stage_choice_on_val():
    """Stage 1 ranks by the mean Δ vs cwd on seeds 0-1 (a +1.5, b +1.0,
    c +0.5, d -1.0); the top 3 go on to seeds 0-2, where b wins
    (a: (1 + 2 - 3) / 3 = 0, b: (1 + 1 + 1) / 3 = 1, c: (0.5 + 0.5 + 0) / 3)."""
    cwd = {0: 30.0, 1: 30.0, 2: 30.0}
    val = {'cwd': cwd,
           'a+cwd': {0: 31.0, 1: 32.0, 2: 27.0},
           'b+cwd': {0: 31.0, 1: 31.0, 2: 31.0},
           'c+cwd': {0: 30.5, 1: 30.5, 2: 30.0},
           'd+cwd': {0: 29.0, 1: 29.0}}
    # the study's design: stage 1 on seeds 0-1, the 3 best on seeds 0-2
    assert (study.CHOICE_SEEDS, study.STAGE2_SEEDS, study.TOP) == (
        (0, 1), (0, 1, 2), 3)
    lines = study.choice_section(val, ['d+cwd', 'c+cwd', 'b+cwd', 'a+cwd'])
    text = '\n'.join(lines)
    stage1 = [ln.split('|')[1].strip() for ln in lines
              if ln.startswith('| ') and '+cwd' in ln][:4]
    assert stage1 == ['a+cwd', 'b+cwd', 'c+cwd', 'd+cwd']
    assert 'Stage 2, seeds 0, 1, 2: chosen `b+cwd`' in text
    # sd of the 8 stage-1 deltas (1, 2, 1, 1, .5, .5, -1, -1) is 1.04
    assert 'standard deviation of 1.04 mIoU' in text
    # without seed 2 for a finalist, no choice is claimed
    del val['c+cwd'][2]
    text = '\n'.join(study.choice_section(
        val, ['d+cwd', 'c+cwd', 'b+cwd', 'a+cwd']))
    assert 'chosen' not in text and 'Stage 2 incomplete' in text


@pytest.mark.parametrize('dataset', ['toyshapes', 'toystreets'])
def test_second_location_arm_is_the_shipped_block(dataset, tmp_path):
    """The study's np_2loc+cwd arm is the I2CKD + CWD toy config plus the
    shipped second-location block (configs/_base_/i2ckd/i2ckd_layer4.py,
    one source for the study and the configs) with the toy layer4
    channels, 128 -> 256, and nothing else."""
    from mmengine.config import Config

    from toy import toy_configs
    cfg, extra = study.arm_spec('np_2loc+cwd', toy_configs(dataset))
    arm = tmp_path / 'arm.py'
    arm.write_text(f'_base_ = [{cfg!r}]\n{extra}')
    got = Config.fromfile(str(arm)).model.distiller.to_dict()
    block = Config.fromfile(osp.join(
        ROOT, 'configs', '_base_', 'i2ckd',
        'i2ckd_layer4.py')).i2ckd_layer4.to_dict()
    block['connectors']['loss_i2ckd4_sfeat'].update(in_channel=128,
                                                     out_channel=256)
    want = study._merged(Config.fromfile(cfg).model.distiller.to_dict(),
                         block)
    assert got == want
    assert got['student_recorders']['feat4']['source'] == 'backbone.layer4'
    assert got['distill_losses']['loss_i2ckd4']['normalize'] is True


def test_round3_choice_against_round2_on_the_same_seeds():
    """Round 3 ranks its arms and round 2's choice by mean val Δ vs cwd on
    seeds 0-2 only (seed 3 is ignored): np_2loc_stop +2, np_2loc +1,
    np_l4 +0.5, np_2loc_w05 -1."""
    cwd = {0: 30.0, 1: 30.0, 2: 30.0, 3: 30.0}
    val = {'cwd': cwd,
           'np_2loc+cwd': {0: 31.0, 1: 31.0, 2: 31.0, 3: 50.0},
           'np_2loc_stop+cwd': {0: 32.0, 1: 31.0, 2: 33.0},
           'np_l4+cwd': {0: 30.5, 1: 30.5, 2: 30.5},
           'np_2loc_w05+cwd': {0: 29.0, 1: 29.0, 2: 29.0}}
    assert (study.BEST, study.ROUND3_SEEDS) == ('np_2loc', (0, 1, 2))
    lines = study.round3_section(val)
    ranked = [ln.split('|')[1].strip() for ln in lines
              if ln.startswith('| ') and '+cwd' in ln]
    assert ranked == ['np_2loc_stop+cwd', 'np_2loc+cwd', 'np_l4+cwd',
                      'np_2loc_w05+cwd']
    assert 'Round 3, seeds 0, 1, 2: chosen `np_2loc_stop+cwd`' in \
        '\n'.join(lines)
    del val['np_l4+cwd'][2]
    text = '\n'.join(study.round3_section(val))
    assert 'chosen' not in text
    assert 'np_l4+cwd' in text.split('Round 3 incomplete')[1]


def test_stop_arm_switches_both_i2ckd_terms_off_at_half_of_training():
    configs = dict(student='S', i2ckd='I', i2ckd_cwd='IC')
    cfg, extra = study.arm_spec('np_2loc_stop+cwd', configs)
    assert cfg == 'IC'
    assert ("losses=dict(loss_i2ckd=dict(stop_iter=500), "
            "loss_i2ckd4=dict(stop_iter=500))") in extra
    assert study.STUDENT_ITERS == 1000


# ------------------------------------------------------------ round 4
def test_class_iou_metric_returns_each_class_by_hand():
    """Two batches: class 0 intersect 3+1 of union 4+4 -> 50 %; class 1
    2 of 8 -> 25 %; class 2 in neither labels nor predictions -> NaN; the
    mean is MMSeg's (nanmean of 0.5, 0.25 -> 37.5)."""
    import torch

    from i2ckd_mm.evaluation import ClassIoUMetric
    m = ClassIoUMetric(iou_metrics=['mIoU'])
    m.dataset_meta = dict(classes=('a', 'b', 'c'))
    t = torch.tensor
    results = [(t([3., 2., 0.]), t([4., 5., 0.]), t([3., 4., 0.]),
                t([4., 3., 0.])),
               (t([1., 0., 0.]), t([4., 3., 0.]), t([2., 3., 0.]),
                t([3., 0., 0.]))]
    out = m.compute_metrics(results)
    assert out['IoU.a'] == 50.0 and out['IoU.b'] == 25.0
    assert np.isnan(out['IoU.c'])
    assert out['mIoU'] == pytest.approx(37.5)


def test_gpu_protocol_pair_builds_with_matching_channels():
    """The GPU study's I2CKD + CWD two-location arm: R50 teacher and
    full-width R18 student, connectors 128 -> 512 (bottleneck) and 512 ->
    2048 (layer4); one distillation loss step runs on a 64x128 image."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmrazor.registry import MODELS

    proto = study.protocol('gpu', 'toystreets')
    cfg_path, extra = study.protocol_arm('np_2loc+cwd', proto)
    assert cfg_path.endswith('gpu_toystreets-256x512.py')
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        arm = osp.join(d, 'arm.py')
        with open(arm, 'w') as f:
            f.write(f'_base_ = [{cfg_path!r}]\n{extra}')
        cfg = Config.fromfile(arm)
    con = cfg.model.distiller.connectors
    assert (con.loss_i2ckd_sfeat.in_channel,
            con.loss_i2ckd_sfeat.out_channel) == (128, 512)
    assert (con.loss_i2ckd4_sfeat.in_channel,
            con.loss_i2ckd4_sfeat.out_channel) == (512, 2048)
    assert cfg.model.teacher.backbone.depth == 50
    assert cfg.model.architecture.backbone.base_channels == 64
    init_default_scope('mmrazor')
    model = MODELS.build(cfg.model)
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    torch.manual_seed(0)
    sample = SegDataSample(gt_sem_seg=PixelData(
        data=torch.randint(0, 14, (1, 64, 128))))
    sample.set_metainfo(dict(img_shape=(64, 128), pad_shape=(64, 128)))
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, 64, 128), dtype=torch.uint8)
                     for _ in range(2)], data_samples=[sample, sample]),
        True)
    model.train()
    losses = model(**data, mode='loss')
    for k in ('distill.loss_i2ckd', 'distill.loss_i2ckd4',
              'distill.loss_cwd'):
        assert torch.isfinite(losses[k]) and losses[k] > 0, k


def test_round4_section_from_csv_rows(tmp_path, monkeypatch):
    """The report section reads the protocol's CSV files: the teacher -
    student gap, paired Δ, the per-class Δ and the goal verdict, all from
    the rows (np_2loc+cwd - cwd = 1.5, 1.5, 2.0 -> +1.67, met)."""
    path = str(tmp_path / 'pt.csv')
    base = dict(dataset='toystreets', iterations=600, wall_s=10)
    rows = [dict(base, arm='teacher', seed=0, split=s, mIoU=m,
                 iterations=1000) for s, m in (('val', 60.0),
                                                ('test', 58.0))]
    for seed, (st, cwd, np_, best) in enumerate(
            [(50, 53, 51, 54.5), (51, 54, 52, 55.5), (52, 55, 53, 57)]):
        for arm, v in (('student', st), ('cwd', cwd), ('np', np_),
                       ('np_2loc+cwd', best)):
            for split in ('val', 'test'):
                rows.append(dict(base, arm=arm, seed=seed, split=split,
                                 mIoU=v))
    harness.append_csv(path, harness.FIELDS, rows)
    cls = []
    for seed in range(3):
        for arm, pole in (('cwd', 10.0), ('np_2loc+cwd', 12.0 + seed),
                          ('student', 5.0), ('np', 6.0)):
            cls.append(dict(dataset='toystreets', split='test', arm=arm,
                            seed=seed, **{'class': 'pole'}, IoU=pole))
    harness.append_csv(path[:-4] + '_classes.csv', harness.CLASS_FIELDS, cls)
    harness.append_csv(path[:-4] + '_curves.csv', harness.CURVE_FIELDS,
                  [dict(dataset='toystreets', arm='cwd', seed=0,
                        iteration=300, mIoU=50.0)])
    text = '\n'.join(study.protocol_section('pretrained', path,
                                            str(tmp_path / 'c.png')))
    # teacher 58 - mean student test 51 = 7.00
    assert '**7.00 mIoU on test**' in text
    assert '| np_2loc+cwd | cwd | 3 | +1.67 | [+0.95, +2.38] | 3/3 | ' \
        'better |' in text
    # pole: +2, +3, +4 over cwd -> +3.0 [+0.5, +5.5]; a thin class
    assert '| pole (thin) |' in text and '**+3.0 [+0.5, +5.5]**' in text
    assert 'toystreets: np_2loc+cwd vs cwd +1.67 [+0.95, +2.38], 3 seeds: ' \
        'goal (>= +1.0, interval above zero) **met**' in text
    assert osp.isfile(tmp_path / 'c.png')


def test_curve_points_read_every_validation(tmp_path):
    import json
    d = tmp_path / '20261203_000000' / 'vis_data'
    d.mkdir(parents=True)
    with open(d / 'scalars.json', 'w') as f:
        for r in ({'loss': 1.0, 'step': 10}, {'mIoU': 20.5, 'step': 100},
                  {'loss': 0.5, 'step': 150}, {'mIoU': 30.25, 'step': 200}):
            f.write(json.dumps(r) + '\n')
    assert harness.curve_points(str(tmp_path)) == [(100, 20.5),
                                                   (200, 30.25)]


def test_teacher_in_the_csv_without_its_checkpoint_is_trained_again(
        tmp_path, monkeypatch):
    """A resumed study on a new machine: the teacher's rows are in the CSV
    but its checkpoint is not. It is trained again (the distillation arms
    need it), its first rows stay the CSV's; with the checkpoint there,
    nothing runs."""
    proto = study.protocol('gpu', 'toystreets')
    proto.update(csv=str(tmp_path / 'gpu.csv'), data_root='data')
    base = dict(dataset='toystreets', arm='teacher', seed=0,
                iterations=600, wall_s=70)
    harness.append_csv(proto['csv'], harness.FIELDS,
                       [dict(base, split='val', mIoU='60.00'),
                        dict(base, split='test', mIoU='58.00')])
    before = open(proto['csv']).read()
    calls = []

    def fake_tool(tool, args, log_file):
        calls.append(tool)
        if tool == 'train.py':  # the checkpoint a training run leaves
            run_dir = args[args.index('--work-dir') + 1]
            open(osp.join(run_dir, 'iter_600.pth'), 'w').close()

    monkeypatch.setattr(harness, 'run_tool', fake_tool)
    monkeypatch.setattr(harness, 'training_seconds', lambda *a: 1.0)
    monkeypatch.setattr(harness, 'curve_points', lambda d: [(600, 61.5)])
    wd = str(tmp_path / 'wd')
    arm, seed, status = study.run(proto, wd, 'teacher', 0,
                                  backbone='bb.pth')
    assert calls == ['train.py'] and status.startswith('trained again')
    assert '61.50' in status
    assert open(proto['csv']).read() == before
    assert osp.isfile(osp.join(wd, 'teacher', 'iter_600.pth'))
    calls.clear()
    assert study.run(proto, wd, 'teacher', 0, backbone='bb.pth')[2] == \
        'in the CSV already'
    assert calls == []


def test_methods_arms_are_the_shipped_configs():
    proto = study.protocol('methods', 'toyshapes')
    for arm in study.GROUPS['methods']:
        if arm != 'cwd':
            assert study.protocol_arm(arm, proto) == (
                proto['configs'][arm], '')
    # <arm>@N: the arm itself, trained N iterations
    assert study.protocol_arm('kd@900', proto) == (proto['configs']['kd'],
                                                   '')
    assert study.arm_iters('kd@900', proto) == 900
    assert study.arm_iters('kd', proto) == 600


def _methods_rows(path):
    """3 seeds of every methods arm: kd has the best val mean (51), its
    I2CKD combination steps 1.5x as long (median of 1.5, 1.6, 1.5)."""
    val = dict(student=40, kd=51, i2ckd_kd=53, dist=48, i2ckd_dist=49,
               mgd=45, i2ckd_mgd=45, cwd=50.5, i2ckd_cwd=50)
    test = {'kd': [40, 41, 42], 'i2ckd_kd': [41, 42.5, 44],
            'dist': [39, 39, 39], 'i2ckd_dist': [40, 41, 42],
            'kd@900': [41.5, 42, 43]}
    rows, steps = [], []
    for arm, v in val.items():
        for seed in range(3):
            t = test.get(arm, [v - 10] * 3)[seed] - (seed if arm in (
                'mgd', 'cwd') else 0)
            base = dict(dataset='toyshapes', arm=arm, seed=seed,
                        iterations=600, wall_s=1)
            rows += [dict(base, split='val', mIoU=v + seed - 1),
                     dict(base, split='test', mIoU=t)]
    for seed, (a, b) in enumerate([(100, 150), (100, 160), (110, 165)]):
        steps += [dict(dataset='toyshapes', arm='kd', seed=seed, step_ms=a),
                  dict(dataset='toyshapes', arm='i2ckd_kd', seed=seed,
                       step_ms=b)]
    harness.append_csv(path, harness.FIELDS, rows)
    harness.append_csv(path[:-4] + '_steps.csv', study.STEP_FIELDS, steps)
    return test


def test_matched_arm_and_methods_section(tmp_path):
    path = str(tmp_path / 'm.csv')
    test = _methods_rows(path)
    kd900 = test.pop('kd@900')
    assert study.matched_arm(path, 'toyshapes', 600) == ('kd@900', 'kd',
                                                         1.5)
    text = '\n'.join(study.methods_section(path))
    # i2ckd_kd - kd on test: 1, 1.5, 2 -> +1.50 [+0.26, +2.74], better;
    # i2ckd_dist - dist: 1, 2, 3 -> +2.00 [-0.48, +4.48], tied
    assert '| i2ckd_kd | kd | 3 | +1.50 | [+0.26, +2.74] | 3/3 | better |' \
        in text
    assert '| i2ckd_dist | dist | 3 | +2.00 | [-0.48, +4.48] | 3/3 | tied |' \
        in text
    assert '`kd@900` not run yet' in text
    assert '1 of 4 methods (kd)' in text and '**not met**' in text
    # the matched arm's runs, in their own CSV with the combination's runs
    # of the same start: i2ckd_kd - kd@900 = -0.5, +0.5, +1.0, tied
    matched = path[:-4] + '_matched.csv'
    harness.append_csv(matched, harness.FIELDS, [
        dict(dataset='toyshapes', arm=arm, seed=s, split=split,
             mIoU=v, iterations=600, wall_s=1)
        for arm, vs in (('kd@900', kd900), ('i2ckd_kd', test['i2ckd_kd']))
        for s, v in enumerate(vs) for split in ('val', 'test')])
    text = '\n'.join(study.methods_section(path))
    assert '`kd@900` not run yet' not in text
    assert '| i2ckd_kd | kd@900 | 3 | +0.33 | [-1.56, +2.23] | 2/3 | tied |' \
        in text
    assert 'vs the matched-compute arm: not better' in text
    # another iteration count of the same method in that CSV is compared
    # too: i2ckd_kd - kd@950 = 0, 0.5, 1 -> +0.50 [-0.74, +1.74]
    harness.append_csv(matched, harness.FIELDS, [
        dict(dataset='toyshapes', arm='kd@950', seed=s, split='test',
             mIoU=v, iterations=950, wall_s=1)
        for s, v in enumerate([41, 42, 43])])
    text = '\n'.join(study.methods_section(path))
    assert '| i2ckd_kd | kd@950 | 3 | +0.50 | [-0.74, +1.74] | 2/3 | tied |' \
        in text


def test_step_time_is_the_median_logged_training_iteration(tmp_path):
    import json
    d = tmp_path / 'run' / '20261203_000000' / 'vis_data'
    d.mkdir(parents=True)
    with open(d / 'scalars.json', 'w') as f:
        for r in ({'loss': 1.0, 'time': 0.2, 'step': 10},
                  {'mIoU': 20.5, 'time': 9.0, 'step': 10},  # a validation
                  {'loss': 0.9, 'time': 0.1, 'step': 20},
                  {'loss': 0.8, 'time': 0.4, 'step': 30}):
            f.write(json.dumps(r) + '\n')
    proto = dict(csv=str(tmp_path / 'm.csv'), dataset='toyshapes')
    for _ in range(2):  # recorded once
        study.record_step_ms(proto, str(tmp_path / 'run'), 'kd', 3)
    rows = harness.read_csv(str(tmp_path / 'm_steps.csv'), 'step_ms')
    assert [(r['arm'], r['seed'], r['step_ms']) for r in rows] == [
        ('kd', 3, 200.0)]


# ------------------------------------------------- teacher_precision_study
def test_teacher_precision_report_from_csv_rows(tmp_path):
    """bf16 - fp32 on test: 1, 2, 3 -> +2.00, half width 4.3027 / sqrt(3)
    = 2.48 -> [-0.48, +4.48], tied; on val 1.0, 1.2, 1.4 -> +1.20 [+0.70,
    +1.70], better."""
    import teacher_precision_study as tps
    path = str(tmp_path / 'tp.csv')
    rows = [dict(dataset='toyshapes', split=s, arm='teacher', seed=0,
                 mIoU=m, iterations=1000, wall_s=400)
            for s, m in (('val', 36.0), ('test', 34.0))]
    for seed, (t32, t16, v32, v16) in enumerate(
            [(30, 31, 33, 34), (31, 33, 33, 34.2), (32, 35, 33, 34.4)]):
        for arm, t, v in (('fp32', t32, v32), ('bf16', t16, v16)):
            base = dict(dataset='toyshapes', arm=arm, seed=seed,
                        iterations=1000, wall_s=300 + seed)
            rows += [dict(base, split='val', mIoU=v),
                     dict(base, split='test', mIoU=t)]
    harness.append_csv(path, harness.FIELDS, rows)
    out = str(tmp_path / 'tp.md')
    text = tps.main(['report', '--csv', path, '--out', out])
    assert open(out).read() == text
    assert 'Teacher (seed 0, 1000 iterations): test 34.00, val 36.00' in text
    assert '| bf16 | fp32 | 3 | +2.00 | [-0.48, +4.48] | 3/3 | tied |' in text
    assert '| bf16 | fp32 | 3 | +1.20 | [+0.70, +1.70] | 3/3 | better |' \
        in text
    assert '| fp32 | 3 | 31.00 ± 1.00 | 0: 30.00, 1: 31.00, 2: 32.00 |' \
        in text
    assert 'With 3 seeds the test interval is ±2.48 mIoU wide' in text
    assert 'fp32 seed 2 302; bf16 seed 2 302.' in text


def test_teacher_precision_runs_differ_only_in_the_precision(tmp_path,
                                                             monkeypatch):
    """``run``: the teacher first, then per seed the fp32 and the bf16 run,
    both the toy I2CKD config with that ``model.teacher_precision`` and the
    teacher's checkpoint; every run a val and a test row."""
    from mmengine.config import Config

    import teacher_precision_study as tps
    calls, wd = [], tmp_path / 'wd'

    def fake_tool(tool, args, log_file):
        run_dir = args[args.index('--work-dir') + 1]
        if tool == 'train.py':
            calls.append((osp.relpath(run_dir, wd), args))
            open(osp.join(run_dir, 'iter_1000.pth'), 'w').close()

    monkeypatch.setattr(tps, 'CSV', str(tmp_path / 'tp.csv'))
    monkeypatch.setattr(harness, 'make_data', lambda root, *a: root)
    monkeypatch.setattr(harness, 'run_tool', fake_tool)
    monkeypatch.setattr(harness, 'training_seconds', lambda *a: 1.0)
    monkeypatch.setattr(harness, 'curve_points', lambda d: [(1000, 40.0)])
    monkeypatch.setattr(harness, 'last_metrics', lambda d: {'mIoU': 39.0})
    tps.main(['run', '--seeds', '0', '--work-dir', str(wd)])
    assert [d for d, _ in calls] == ['teacher', 'runs/fp32/seed0',
                                     'runs/bf16/seed0']
    ckpt = f"model.teacher_ckpt={wd / 'teacher' / 'iter_1000.pth'}"
    assert [ckpt in args for _, args in calls] == [False, True, True]
    rows = harness.read_csv(tps.CSV)
    assert [(r['arm'], r['split']) for r in rows] == [
        (a, s) for a in ('teacher', 'fp32', 'bf16') for s in ('val', 'test')]
    cfgs = {a: Config.fromfile(str(wd / 'runs' / a / 'seed0' / 'config.py'))
            for a in ('fp32', 'bf16')}
    assert cfgs['bf16'].model.teacher_precision == 'bf16'
    cfgs['bf16'].model.teacher_precision = 'fp32'
    assert cfgs['bf16'].to_dict() == cfgs['fp32'].to_dict()
    base = Config.fromfile(tps.protocol('scratch', 'toyshapes')['configs'][
        'i2ckd'])
    assert cfgs['fp32'].model.type == base.model.type == 'I2CKDDistill'

"""benchmarks/accuracy_study.py: the statistics, the verdict wording, the
CSV bookkeeping that makes the study resumable, and the arm definitions."""
import os.path as osp
import sys

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import accuracy_study as study  # noqa: E402


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: half width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732
    m, (lo, hi) = study.t_interval(np.array([1.0, 2.0, 3.0]))
    assert m == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert hi == pytest.approx(2.0 + 2.484138, abs=1e-5)


def test_verdict_says_tied_when_the_interval_holds_zero():
    assert study.verdict(-0.5, 4.5) == 'tied'
    assert study.verdict(0.1, 2.0) == 'improves'
    assert study.verdict(-2.0, -0.1) == 'worse'


def test_comparison_table_pairs_by_seed():
    results = {'a': {0: 40.0, 1: 41.2, 2: 42.4, 9: 99.0},
               'b': {0: 39.0, 1: 40.0, 2: 41.0}}
    line = study.comparison_table(results, [('a', 'b')])[2]
    # seed 9 has no partner; differences 1.0, 1.2, 1.4: mean 1.20, sd 0.2,
    # half width 4.3027 * 0.2 / sqrt(3) = 0.497
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[:5] == ['a', 'b', '3', '+1.20', '[+0.70, +1.70]']
    assert cells[5] == '3/3' and cells[6] == 'improves'
    # 1, 1, 2: all wins, but the interval [-0.10, +2.77] holds zero
    results['a'] = {0: 40.0, 1: 41.0, 2: 43.0}
    line = study.comparison_table(results, [('a', 'b')])[2]
    assert line.endswith('| 3/3 | tied |')


def test_csv_rows_make_a_run_done(tmp_path, monkeypatch):
    csv_path = str(tmp_path / 'runs.csv')
    monkeypatch.setattr(study, 'CSV', csv_path)
    assert not study.done('toyshapes', 'cwd', 0)
    base = dict(dataset='toyshapes', arm='cwd', seed=0, iterations=1000,
                wall_s=100)
    study.append_rows([dict(base, split='val', mIoU='37.00')], csv_path)
    assert not study.done('toyshapes', 'cwd', 0)  # test still missing
    study.append_rows([dict(base, split='test', mIoU='35.00')], csv_path)
    assert study.done('toyshapes', 'cwd', 0)
    assert not study.done('toystreets', 'cwd', 0)
    rows = study.read_rows(csv_path)
    assert [r['mIoU'] for r in rows] == [37.0, 35.0]
    assert list(rows[0]) == study.FIELDS


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
    args = type('Args', (), dict(choice_seeds=[0, 1],
                                 second_stage_seeds=[0, 1, 2], top=3))
    lines = study.choice_section(val, ['d+cwd', 'c+cwd', 'b+cwd', 'a+cwd'],
                                 args)
    text = '\n'.join(lines)
    stage1 = [ln.split('|')[1].strip() for ln in lines
              if ln.startswith('| ') and '+cwd' in ln][:4]
    assert stage1 == ['a+cwd', 'b+cwd', 'c+cwd', 'd+cwd']
    assert 'chosen: `b+cwd`' in text
    # sd of the 8 stage-1 deltas (1, 2, 1, 1, .5, .5, -1, -1) is 1.04
    assert 'standard deviation of 1.04 mIoU' in text
    # without seed 2 for a finalist, no choice is claimed
    del val['c+cwd'][2]
    text = '\n'.join(study.choice_section(
        val, ['d+cwd', 'c+cwd', 'b+cwd', 'a+cwd'], args))
    assert 'chosen' not in text and 'incomplete' in text


@pytest.mark.parametrize('dataset', ['toyshapes', 'toystreets'])
def test_second_location_arm_is_the_shipped_block(dataset, tmp_path):
    """The study's np_2loc+cwd arm is the I2CKD + CWD toy config plus the
    shipped second-location block (configs/_base_/i2ckd/i2ckd_layer4.py,
    one source for the study and the configs) with the toy layer4
    channels, 128 -> 256, and nothing else."""
    from mmengine.config import Config

    from i2ckd_mm.toy import toy_configs
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
    args = type('Args', (), dict(best='np_2loc', round3_seeds=[0, 1, 2]))
    lines = study.round3_section(val, args)
    ranked = [ln.split('|')[1].strip() for ln in lines
              if ln.startswith('| ') and '+cwd' in ln]
    assert ranked == ['np_2loc_stop+cwd', 'np_2loc+cwd', 'np_l4+cwd',
                      'np_2loc_w05+cwd']
    assert 'Chosen in round 3: `np_2loc_stop+cwd`' in '\n'.join(lines)
    del val['np_l4+cwd'][2]
    text = '\n'.join(study.round3_section(val, args))
    assert 'Chosen' not in text and 'np_l4+cwd' in text.split('Incomplete')[1]


def test_stop_arm_switches_both_i2ckd_terms_off_at_half_of_training():
    configs = dict(student='S', i2ckd='I', i2ckd_cwd='IC')
    cfg, extra = study.arm_spec('np_2loc_stop+cwd', configs)
    assert cfg == 'IC'
    assert ("losses=dict(loss_i2ckd=dict(stop_iter=500), "
            "loss_i2ckd4=dict(stop_iter=500))") in extra
    assert study.STUDENT_ITERS == 1000

"""Same seed, same start: a distilled student and the student trained alone
(same config, same ``randomness.seed``) start from the same weights and draw
the same random numbers afterwards (e.g. dropout masks).

Built through MMEngine's Runner, which seeds before it builds the model, as
``tools/train.py`` does; ``init_weights`` is what the Runner calls before the
first iteration.
"""
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import i2ckd_mm  # noqa: F401
from toy import toy_configs

TOY = toy_configs()


def _start(cfg_path, seed, tmp_path, **model_overrides):
    """(initial student state dict, next random draw) of a Runner-built
    model."""
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path)
    cfg.randomness = dict(seed=seed)
    cfg.model.update(model_overrides)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # no teacher_ckpt: a random teacher
        runner = Runner.from_cfg(cfg)
    model = runner.model
    model.init_weights()
    student = getattr(model, 'student', model)
    state = {k: v.clone() for k, v in student.state_dict().items()}
    return state, torch.rand(8)


@pytest.mark.parametrize('distill_cfg', ['i2ckd', 'i2ckd_cwd'])
def test_distilled_student_starts_like_the_student_alone(tmp_path,
                                                         distill_cfg):
    alone, draw_alone = _start(TOY['student'], 3, tmp_path / 'a')
    distilled, draw_distilled = _start(TOY[distill_cfg], 3, tmp_path / 'b',
                                       teacher_ckpt=None)
    assert alone.keys() == distilled.keys()
    for k in alone:
        assert torch.equal(alone[k], distilled[k]), k
    # the random numbers drawn after initialisation (dropout masks, ...) too
    assert torch.equal(draw_alone, draw_distilled)


def test_another_seed_gives_another_start(tmp_path):
    """The comparison above is not vacuous: the start depends on the seed."""
    a, _ = _start(TOY['student'], 3, tmp_path / 'a')
    b, _ = _start(TOY['i2ckd'], 4, tmp_path / 'b', teacher_ckpt=None)
    conv = 'backbone.stem.0.weight'
    assert not torch.equal(a[conv], b[conv])

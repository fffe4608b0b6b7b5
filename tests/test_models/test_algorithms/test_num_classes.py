"""num_classes in one place: I2CKDDistill gives every I2CKDLoss the student's
decode_head.num_classes and refuses a student, teacher and loss that
disagree, with one message naming all three numbers."""
import re

import pytest
import torch

from i2ckd_mm.models.losses import I2CKDLoss
from tiny_models import (make_seg_batch, tiny_distill_cfg, tiny_segmentor)
from mmrazor.registry import MODELS


def _cfg(student_classes, teacher_classes, loss_classes=None):
    cfg = tiny_distill_cfg(
        student=tiny_segmentor(8, student_classes),
        teacher=tiny_segmentor(16, teacher_classes))
    loss = cfg.distiller.distill_losses.loss_i2ckd
    loss.pop('num_classes')
    if loss_classes is not None:
        loss.num_classes = loss_classes
    return cfg


def _build(cfg):
    with pytest.warns(UserWarning, match='no teacher_ckpt'):
        return MODELS.build(cfg)


@pytest.mark.parametrize('classes', [3, 9])
def test_loss_takes_the_students_class_count(classes):
    model = _build(_cfg(classes, classes))
    loss = model.distiller.distill_losses['loss_i2ckd']
    assert isinstance(loss, I2CKDLoss)
    assert loss.num_classes == classes
    # and trains with it: label classes-1 is a valid class, not an error
    batch = model.data_preprocessor(
        make_seg_batch(n=2, num_classes=classes, seed=1), True)
    losses = model(**batch, mode='loss')
    assert torch.isfinite(losses['distill.loss_i2ckd'])
    assert losses['distill.i2ckd_triplets'] > 0


def test_an_explicit_count_that_agrees_is_kept():
    model = _build(_cfg(5, 5, loss_classes=5))
    assert model.distiller.distill_losses['loss_i2ckd'].num_classes == 5


@pytest.mark.parametrize('student,teacher,loss', [
    (5, 4, None),   # student and teacher differ, loss left to the algorithm
    (5, 5, 4),      # the loss config contradicts both models
    (5, 4, 3),      # all three differ
])
def test_disagreeing_counts_fail_with_one_message_naming_all_three(
        student, teacher, loss):
    with pytest.raises(ValueError) as err:
        MODELS.build(_cfg(student, teacher, loss_classes=loss))
    msg = str(err.value)
    assert msg.count('I2CKDDistill: the class counts disagree') == 1
    assert re.search(rf'student decode_head.num_classes = {student}\b', msg)
    assert re.search(rf'teacher decode_head.num_classes = {teacher}\b', msg)
    assert re.search(rf'loss_i2ckd.num_classes \(loss config\) = {loss}\b',
                     msg)
    assert 'leave num_classes out of the loss config' in msg


def test_a_student_without_decode_head_needs_the_count_in_the_loss():
    cfg = _cfg(4, 4)
    model = _build(cfg)  # a real segmentor: filled
    assert model.distiller.distill_losses['loss_i2ckd'].num_classes == 4
    model.student.decode_head.num_classes = None  # as if it had no count
    model.distiller.distill_losses['loss_i2ckd']._num_classes = None
    with pytest.raises(ValueError, match='Set num_classes in the loss'):
        model._set_loss_num_classes()

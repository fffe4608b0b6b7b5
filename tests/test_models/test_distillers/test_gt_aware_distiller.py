"""GTAwareDistiller: labels reach the loss via from_data, clear errors."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from mmengine.model import BaseModel
from mmrazor.registry import MODELS

from i2ckd_mm.models.distillers.gt_aware_distiller import GTAwareDistiller
from i2ckd_mm.models.losses import I2CKDLoss


def tiny_net(out_channels):
    return nn.Sequential(
        OrderedDict(feat=nn.Conv2d(3, out_channels, 1), head=nn.ReLU()))


def distiller_cfg(**overrides):
    mapping = dict(
        preds_S=dict(from_student=True, recorder='feat', connector='conn'),
        preds_T=dict(from_student=False, recorder='feat'),
        gt=dict(from_data='gt_sem_seg'))
    mapping.update(overrides.pop('mapping', {}))
    cfg = dict(
        type='GTAwareDistiller',
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        connectors=dict(
            conn=dict(type='ConvModuleConnector', in_channel=2, out_channel=4,
                      kernel_size=1, act_cfg=None)),
        distill_losses=dict(
            loss_i2ckd=dict(type='I2CKDLoss', num_classes=3, margin=2.0)),
        loss_forward_mappings=dict(loss_i2ckd=mapping))
    cfg.update(overrides)
    return cfg


def run(distiller, student, teacher, x, gt):
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    with distiller.teacher_recorders:
        teacher(x)
    with distiller.student_recorders:
        student(x)
    return distiller.compute_distill_losses(dict(gt_sem_seg=gt))


def test_from_data_delivers_the_labels():
    torch.manual_seed(0)
    student, teacher = tiny_net(2), tiny_net(4)
    distiller = MODELS.build(distiller_cfg())
    assert isinstance(distiller, GTAwareDistiller)
    x = torch.randn(2, 3, 8, 8)
    gt = torch.randint(0, 3, (2, 8, 8))
    gt[:, :2] = 255
    seen = {}
    loss_module = distiller.distill_losses['loss_i2ckd']
    original = loss_module.forward

    def spy(preds_S, preds_T, gt):
        seen.update(preds_S=preds_S, preds_T=preds_T, gt=gt)
        return original(preds_S, preds_T, gt)

    loss_module.forward = spy
    losses = run(distiller, student, teacher, x, gt)
    assert seen['gt'] is gt  # the very tensor the algorithm passed
    torch.testing.assert_close(seen['preds_T'], teacher.feat(x))
    conn = distiller.connectors['conn']
    torch.testing.assert_close(seen['preds_S'], conn(student.feat(x)))
    expected = I2CKDLoss(num_classes=3, margin=2.0)(
        conn(student.feat(x)), teacher.feat(x), gt)
    torch.testing.assert_close(losses['loss_i2ckd'], expected)
    # the loss reaches student and connector
    losses['loss_i2ckd'].backward()
    assert student.feat.weight.grad.abs().sum() > 0
    assert conn.conv_module.conv.weight.grad.abs().sum() > 0


def test_stats_are_logged_but_not_backpropagated():
    torch.manual_seed(0)
    distiller = MODELS.build(distiller_cfg())
    x = torch.randn(2, 3, 8, 8)
    gt = torch.randint(0, 3, (2, 8, 8))
    losses = run(distiller, tiny_net(2), tiny_net(4), x, gt)
    stats = {k: v for k, v in losses.items() if k != 'loss_i2ckd'}
    assert set(stats) == {
        f'i2ckd_{s}'
        for s in ('active', 'd_pos', 'd_neg', 'triplets', 'pull')
    }
    assert all('loss' not in k and not v.requires_grad
               for k, v in stats.items())
    # MMEngine sums only keys containing 'loss': the total is the loss alone
    total, log_vars = BaseModel.parse_losses(None, losses)
    torch.testing.assert_close(total, losses['loss_i2ckd'])
    assert float(log_vars['i2ckd_triplets']) == float(
        distiller.distill_losses['loss_i2ckd'].last_stats['triplets'])


def test_unknown_from_data_key_is_rejected_at_build():
    cfg = distiller_cfg(mapping=dict(gt=dict(from_data='gt_instances')))
    with pytest.raises(KeyError, match="loss_i2ckd.gt.*gt_sem_seg.*"
                       "'gt_instances'"):
        MODELS.build(cfg)


def test_from_data_missing_from_batch_is_a_clear_error():
    distiller = MODELS.build(distiller_cfg())
    student, teacher = tiny_net(2), tiny_net(4)
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    x = torch.randn(1, 3, 4, 4)
    with distiller.teacher_recorders:
        teacher(x)
    with distiller.student_recorders:
        student(x)
    with pytest.raises(KeyError, match="loss_i2ckd needs 'gt_sem_seg'"):
        distiller.compute_distill_losses()


@pytest.mark.parametrize('from_student,side', [(True, 'student'),
                                               (False, 'teacher')])
def test_unknown_recorder_names_it_and_the_known_ones(from_student, side):
    key = 'preds_S' if from_student else 'preds_T'
    cfg = distiller_cfg(
        mapping={key: dict(from_student=from_student, recorder='fet')})
    with pytest.raises(KeyError,
                       match=rf'{key}: recorder "fet" does not exist in '
                       rf'{side}_recorders .*feat'):
        MODELS.build(cfg)


def test_unknown_loss_name_in_mappings():
    cfg = distiller_cfg()
    cfg['loss_forward_mappings'] = dict(
        loss_other=cfg['loss_forward_mappings']['loss_i2ckd'])
    with pytest.raises(KeyError, match='loss_other.*loss_i2ckd'):
        MODELS.build(cfg)


def test_from_data_argument_must_exist_in_loss_signature():
    cfg = distiller_cfg()
    mapping = cfg['loss_forward_mappings']['loss_i2ckd']
    mapping['labels'] = mapping.pop('gt')
    with pytest.raises(KeyError, match='labels.*I2CKDLoss.*gt'):
        MODELS.build(cfg)


def test_unknown_connector_name_is_rejected_at_build():
    cfg = distiller_cfg(mapping=dict(
        preds_S=dict(from_student=True, recorder='feat', connector='con')))
    with pytest.raises(KeyError, match=r'preds_S: connector "con".*conn'):
        MODELS.build(cfg)

"""I2CKDDistill: one real distillation step on CPU, frozen teacher, ckpts.

The step uses the shipped Cityscapes config (DeepLabV3 R101 teacher via its
``mmseg::`` cfg_path, R18 student) at 64x64 instead of 512x1024: the data
preprocessor's crop/pad size is set to the small input. SyncBN is kept: with
no process group initialised it runs as plain BN on CPU.
"""
import copy
import os.path as osp
import time

import pytest
import torch
from torch import nn

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from mmengine.config import Config, ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.optim import OptimWrapper
from mmrazor.registry import MODELS

from i2ckd_mm.models.algorithms import I2CKDDistill
from i2ckd_mm.models.losses import I2CKDLoss
from tiny_models import make_seg_batch, tiny_distill, tiny_segmentor

CONFIG = osp.join(
    osp.dirname(__file__), '..', '..', '..', 'configs', 'i2ckd',
    'i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_'
    'cityscapes-512x1024.py')
SIZE = 64


def make_batch(size=SIZE, num_labels=4):
    """Raw batch: uint8 images, labels in [0, num_labels) + ignore."""
    return make_seg_batch(size=size, num_classes=num_labels,
                          labels_first=True, ignore_rows=4, metainfo=True)


@pytest.fixture(scope='module')
def real(tmp_path_factory):
    """The config's algorithm, built once, with a random teacher ckpt."""
    cfg = Config.fromfile(CONFIG)
    model_cfg = cfg.model
    model_cfg.architecture.data_preprocessor.size = (SIZE, SIZE)
    model_cfg.architecture.pretrained = None  # no ImageNet download
    # a random teacher state dict, saved as an MMSeg-style checkpoint
    teacher = MODELS.build(copy.deepcopy(model_cfg.teacher))
    torch.manual_seed(0)
    for m in teacher.modules():  # non-default stats: loading is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=state, meta=dict(iter=1)), path)
    del teacher
    model_cfg.teacher_ckpt = path
    t0 = time.time()
    alg = MODELS.build(model_cfg)
    build_s = time.time() - t0
    return dict(alg=alg, state=state, build_s=build_s, cfg=model_cfg)


def test_config_builds_the_algorithm_and_loads_teacher(real):
    alg = real['alg']
    assert isinstance(alg, I2CKDDistill)
    assert type(alg.teacher.backbone).__name__ == 'ResNetV1c'
    assert alg.teacher.backbone.depth == 101
    assert alg.student.backbone.depth == 18
    own = alg.teacher.state_dict()
    assert all(torch.equal(own[k], v) for k, v in real['state'].items())


def test_one_training_step(real, monkeypatch):
    alg = real['alg']
    teacher = alg.teacher

    # The teacher must not compute a loss: any loss path raises.
    def no_loss(*args, **kwargs):
        raise AssertionError('the teacher computed a loss')

    monkeypatch.setattr(teacher, 'loss', no_loss)
    monkeypatch.setattr(teacher.decode_head, 'loss_by_feat', no_loss)
    monkeypatch.setattr(teacher.auxiliary_head, 'loss_by_feat', no_loss)

    dropouts = [m for m in teacher.modules() if isinstance(m, nn.Dropout2d)]
    assert dropouts, 'the DeepLabV3 teacher head has a Dropout2d'
    modes_during, feats = [], {}

    def record_modes(module, args):
        modes_during.append(
            [m.training for m in teacher.modules()] + [torch.is_grad_enabled()])

    def keep(name):
        def hook(module, args, out):
            feats[name] = out
        return hook

    handles = [
        teacher.register_forward_pre_hook(record_modes),
        dropouts[0].register_forward_pre_hook(record_modes),
        teacher.decode_head.bottleneck.register_forward_hook(keep('t')),
        alg.student.decode_head.bottleneck.register_forward_hook(keep('s')),
    ]
    assert not any(m.training for m in teacher.modules())  # before
    alg.train()  # must not switch the teacher to train mode
    assert alg.student.training and alg.student.decode_head.dropout.training
    assert not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad for p in teacher.parameters())

    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {
        k: v.detach().clone()
        for k, v in alg.student.named_parameters()
    }
    data = alg.data_preprocessor(make_batch(), True)
    assert data['inputs'].shape == (2, 3, SIZE, SIZE)
    t0 = time.time()
    losses = alg(**data, mode='loss')
    for h in handles:
        h.remove()

    # teacher in eval mode and without autograd while it ran
    assert len(modes_during) == 2
    assert not any(any(modes) for modes in modes_during)

    # one key per term; the total is their sum
    for key in ('student.decode.loss_ce', 'student.aux.loss_ce',
                'distill.loss_i2ckd', 'distill.i2ckd_active',
                'distill.i2ckd_triplets'):
        assert key in losses, key
    assert not any(k.startswith('teacher') for k in losses)
    total, log_vars = alg.parse_losses(losses)
    assert torch.isfinite(total)
    torch.testing.assert_close(
        total, losses['student.decode.loss_ce'] +
        losses['student.aux.loss_ce'] + losses['distill.loss_i2ckd'])
    assert float(losses['distill.loss_i2ckd']) > 0

    # the distill term is I2CKDLoss(connector(student), teacher, labels)
    gt = torch.stack([s.gt_sem_seg.data[0] for s in data['data_samples']])
    conn = alg.distiller.connectors['loss_i2ckd_sfeat']
    assert feats['s'].shape[1] == 128 and feats['t'].shape[1] == 512
    # the config's loss options (the shipped variant), rebuilt independently
    loss_cfg = dict(real['cfg'].distiller.distill_losses.loss_i2ckd)
    assert loss_cfg.pop('type') == 'I2CKDLoss'
    assert (loss_cfg['normalize'], loss_cfg['margin'],
            loss_cfg['pull_weight']) == (True, 0.2, 1.0)
    # num_classes is not in the config: the algorithm filled it from the
    # student's decode head (19 Cityscapes classes)
    assert 'num_classes' not in loss_cfg
    assert alg.distiller.distill_losses['loss_i2ckd'].num_classes == 19
    expected = I2CKDLoss(num_classes=19, **loss_cfg)(conn(feats['s']),
                                                     feats['t'], gt)
    torch.testing.assert_close(losses['distill.loss_i2ckd'], expected)

    # gradients of the distill term reach student and connector
    bneck = alg.student.decode_head.bottleneck.conv.weight
    g_student, g_conn = torch.autograd.grad(
        losses['distill.loss_i2ckd'], [bneck, conn.conv_module.conv.weight],
        retain_graph=True)
    assert g_student.abs().sum() > 0 and g_conn.abs().sum() > 0

    optim = OptimWrapper(
        torch.optim.SGD(alg.parameters(), lr=0.1, momentum=0.9,
                        weight_decay=1e-2))
    optim.update_params(total)
    step_s = time.time() - t0
    print(f'\nbuild {real["build_s"]:.1f}s, one step {step_s:.1f}s')

    assert all(p.grad is None for p in teacher.parameters())
    teacher_after = teacher.state_dict()
    assert all(
        torch.equal(teacher_after[k], v) for k, v in teacher_before.items())
    changed = [
        k for k, p in alg.student.named_parameters()
        if not torch.equal(p.detach(), student_before[k])
    ]
    assert 'backbone.stem.0.weight' in changed
    assert 'decode_head.bottleneck.conv.weight' in changed
    assert not any(m.training for m in teacher.modules())  # after


def test_teacher_stays_eval_whatever_mode(real):
    alg = real['alg']
    for mode in (True, False, True):
        alg.train(mode)
        assert alg.student.training == mode
        assert not any(m.training for m in alg.teacher.modules())


# ------------------------------------------------ teacher checkpoint loading
# a DeepLabV3-like (ASPP head) student and teacher, 3 classes, no connector
TINY = dict(num_classes=3, head='aspp', dropout_ratio=0.1,
            contract_dilation=False)


def tiny_algorithm(**kwargs):
    return tiny_distill(
        student=tiny_segmentor(**TINY), teacher=tiny_segmentor(**TINY),
        num_classes=3, source='decode_head.bottleneck', connector=None,
        **kwargs)


@pytest.fixture(scope='module')
def tiny_state():
    torch.manual_seed(1)
    model = MODELS.build(ConfigDict(tiny_segmentor(**TINY)))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_tiny_teacher_ckpt_loads_and_survives_init_weights(
        tiny_state, tmp_path):
    path = str(tmp_path / 't.pth')
    # DDP-saved keys carry 'module.': they are stripped
    torch.save({'state_dict': {'module.' + k: v
                               for k, v in tiny_state.items()}}, path)
    alg = tiny_algorithm(teacher_ckpt=path)
    alg.init_weights()  # the runner does this; it must not reinit the teacher
    own = alg.teacher.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tiny_state.items())
    # and a short step runs end to end
    data = alg.data_preprocessor(make_batch(size=32, num_labels=3), True)
    losses = alg(**data, mode='loss')
    assert torch.isfinite(alg.parse_losses(losses)[0])


def test_missing_teacher_ckpt_names_the_path(tmp_path):
    path = str(tmp_path / 'nowhere' / 'teacher.pth')
    with pytest.raises(FileNotFoundError, match='nowhere/teacher.pth'):
        tiny_algorithm(teacher_ckpt=path)


def test_teacher_ckpt_with_wrong_keys(tiny_state, tmp_path):
    state = dict(tiny_state)
    state.pop('decode_head.conv_seg.weight')
    state['decode_head.extra.weight'] = torch.zeros(1)
    path = str(tmp_path / 'wrong.pth')
    torch.save(state, path)
    with pytest.raises(RuntimeError,
                       match=r'does not match the teacher.*1 missing keys '
                       r".*decode_head.conv_seg.weight.*1 unexpected keys"):
        tiny_algorithm(teacher_ckpt=path)


def test_teacher_ckpt_with_wrong_shape(tiny_state, tmp_path):
    state = dict(tiny_state)
    state['decode_head.conv_seg.weight'] = torch.zeros(5, 8, 1, 1)
    path = str(tmp_path / 'shape.pth')
    torch.save(state, path)
    with pytest.raises(RuntimeError, match='1 shape mismatches'):
        tiny_algorithm(teacher_ckpt=path)


class _Custom:
    """A class no allowlist knows: unpickling it needs full trust."""


def test_untrusted_pickle_needs_explicit_trust(tiny_state, tmp_path):
    # an object of an arbitrary class in 'meta' needs full unpickling
    path = str(tmp_path / 'pickled.pth')
    torch.save(dict(state_dict=tiny_state, meta=dict(obj=_Custom())), path)
    from i2ckd_mm.checkpoint import UntrustedCheckpointError
    with pytest.raises(UntrustedCheckpointError,
                       match='pickled.pth.*teacher_ckpt_trusted=True'):
        tiny_algorithm(teacher_ckpt=path)
    alg = tiny_algorithm(teacher_ckpt=path, teacher_ckpt_trusted=True)
    own = alg.teacher.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tiny_state.items())


def test_mmengine_checkpoint_loads_without_trust(tiny_state, tmp_path):
    """An MMEngine run checkpoint (message hub with a HistoryBuffer in
    'meta') is plain data: it loads with weights_only=True."""
    path = str(tmp_path / 'mmengine.pth')
    torch.save(
        dict(state_dict=tiny_state, meta=dict(hist=HistoryBuffer([1.0], [1]))),
        path)
    alg = tiny_algorithm(teacher_ckpt=path)
    own = alg.teacher.state_dict()
    assert all(torch.equal(own[k], v) for k, v in tiny_state.items())


def test_teacher_trainable_is_refused():
    with pytest.raises(ValueError, match='frozen'):
        tiny_algorithm(teacher_trainable=True)


def test_stopped_distillation_skips_the_teacher_forward(monkeypatch):
    alg = tiny_algorithm()
    alg.distillation_stopped = True

    def teacher_forward(*args, **kwargs):
        raise AssertionError('teacher ran after distillation stopped')

    monkeypatch.setattr(alg.teacher, 'forward', teacher_forward)
    data = alg.data_preprocessor(make_batch(size=32, num_labels=3), True)
    losses = alg(**data, mode='loss')
    assert not any(k.startswith('distill.') for k in losses)
    assert 'student.decode.loss_ce' in losses


def test_missing_teacher_ckpt_warns():
    with pytest.warns(UserWarning, match='no teacher_ckpt'):
        tiny_algorithm()

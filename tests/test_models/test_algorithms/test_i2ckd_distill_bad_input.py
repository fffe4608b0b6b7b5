"""I2CKDDistill on bad configs, checkpoints and batches: clear errors."""
import copy

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmrazor.registry import MODELS

from tiny_models import make_seg_batch, tiny_distill_cfg, tiny_segmentor


def _cfg(**overrides):
    """Student 8 / teacher 16 channels wide; feature = decode_head.convs
    (16 / 32 channels), bridged by a connector."""
    return tiny_distill_cfg(**overrides)


def _batch(model):
    return model.data_preprocessor(make_seg_batch(), True)


@pytest.fixture(scope='module')
def teacher_state(tmp_path_factory):
    """A real checkpoint of the configured teacher (MMSeg layout)."""
    torch.manual_seed(1)
    teacher = MODELS.build(ConfigDict(tiny_segmentor(16)))
    path = tmp_path_factory.mktemp('ckpt') / 'teacher.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=teacher.state_dict()),
               path)
    return path, teacher.state_dict()


def test_valid_teacher_checkpoint_loads_exactly(teacher_state):
    path, state = teacher_state
    model = MODELS.build(_cfg(teacher_ckpt=str(path)))
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_missing_teacher_checkpoint(tmp_path):
    path = tmp_path / 'nowhere' / 'teacher.pth'
    with pytest.raises(FileNotFoundError, match='teacher checkpoint not found'
                       r'.*nowhere/teacher\.pth'):
        MODELS.build(_cfg(teacher_ckpt=str(path)))


def test_truncated_teacher_checkpoint(teacher_state, tmp_path):
    data = teacher_state[0].read_bytes()
    path = tmp_path / 'truncated.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match=r'truncated\.pth.*unreadable'):
        MODELS.build(_cfg(teacher_ckpt=str(path)))
    path.write_bytes(b'not a checkpoint at all')
    with pytest.raises(RuntimeError, match='unreadable|weights_only'):
        MODELS.build(_cfg(teacher_ckpt=str(path)))


def test_teacher_checkpoint_with_other_keys_or_shapes(tmp_path):
    # the *student's* weights: same key names, other shapes
    student = MODELS.build(ConfigDict(tiny_segmentor(8)))
    path = tmp_path / 'student.pth'
    torch.save(dict(state_dict=student.state_dict()), path)
    with pytest.raises(RuntimeError,
                       match=r'does not match the teacher.*0 missing keys.*'
                       r'[1-9]\d* shape mismatches'):
        MODELS.build(_cfg(teacher_ckpt=str(path)))
    # renamed keys (e.g. a checkpoint of a wrapper): missing + unexpected
    teacher = MODELS.build(ConfigDict(tiny_segmentor(16)))
    renamed = {'model.' + k: v for k, v in teacher.state_dict().items()}
    torch.save(renamed, path)
    n = len(renamed)
    with pytest.raises(RuntimeError, match=rf'{n} missing keys.*{n} '
                       r"unexpected keys \['model\.backbone"):
        MODELS.build(_cfg(teacher_ckpt=str(path)))


@pytest.mark.parametrize('side', ['student', 'teacher'])
def test_recorder_source_missing_in_model(side):
    cfg = _cfg()
    cfg.distiller[f'{side}_recorders'].feat.source = 'decode_head.convz'
    with pytest.raises(KeyError, match=rf"{side}_recorders\.feat: source "
                       r"'decode_head\.convz' is not a module of the "
                       rf"{side}.*decode_head\.convs"):
        MODELS.build(cfg)


def test_recorder_name_missing_in_mapping():
    cfg = _cfg()
    cfg.distiller.loss_forward_mappings.loss_i2ckd.preds_T.recorder = 'feet'
    with pytest.raises(KeyError, match=r'preds_T: recorder "feet" does not '
                       r'exist in teacher_recorders'):
        MODELS.build(cfg)


def test_mapping_names_unknown_loss_or_data():
    cfg = _cfg()
    cfg.distiller.loss_forward_mappings.loss_i2ckd.gt = dict(
        from_data='gt_depth')
    with pytest.raises(KeyError, match="from_data must be one of"):
        MODELS.build(cfg)


def test_channel_mismatch_without_connector():
    cfg = _cfg()
    del cfg.distiller.loss_forward_mappings.loss_i2ckd.preds_S['connector']
    model = MODELS.build(cfg)
    with pytest.raises(ValueError, match=r'16 channels but teacher feature '
                       r'has 32.*I2CKDConnector\(in_channels=16, '
                       r'out_channels=32\)'):
        model(**_batch(model), mode='loss')


def test_label_size_not_matching_input():
    model = MODELS.build(_cfg())
    batch = _batch(model)
    for sample in batch['data_samples']:
        sample.gt_sem_seg = PixelData(
            data=torch.zeros(1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r'label size \(16, 16\) does not '
                       r'match the input size \(32, 32\)'):
        model(**batch, mode='loss')


def test_labels_of_different_sizes_in_one_batch():
    model = MODELS.build(_cfg())
    batch = _batch(model)
    batch['data_samples'][1].gt_sem_seg = PixelData(
        data=torch.zeros(1, 32, 16, dtype=torch.long))
    with pytest.raises(ValueError, match='differ in size'):
        model(**batch, mode='loss')


def test_empty_batch():
    model = MODELS.build(_cfg())
    with pytest.raises(ValueError, match=r'empty batch \(0 images\)'):
        model(torch.zeros(0, 3, 32, 32), [], mode='loss')
    batch = _batch(model)
    with pytest.raises(ValueError, match='2 inputs but 1 data samples'):
        model(batch['inputs'], batch['data_samples'][:1], mode='loss')


def test_all_ignore_batch_trains_without_nan():
    """A batch whose labels are all ignore: CE and I2CKD both 0-safe."""
    model = MODELS.build(_cfg())
    model.train()
    batch = _batch(model)
    for sample in batch['data_samples']:
        sample.gt_sem_seg = PixelData(
            data=torch.full((1, 32, 32), 255, dtype=torch.long))
    losses = model(**batch, mode='loss')
    assert losses['distill.loss_i2ckd'].item() == 0.0
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    conn = model.distiller.connectors['sfeat'].conv_module.conv.weight
    assert conn.grad is not None and (conn.grad == 0).all()



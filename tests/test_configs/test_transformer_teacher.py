"""A transformer teacher (SegFormer MiT-B5, MMSeg's model zoo) distils a CNN
student (DeepLabV3-R18): the shipped config builds, its features differ in
stride and channels, and one CPU training step runs with finite loss and
diagnostics, under mmcv-lite (no compiled mmcv op needed)."""
from pathlib import Path

import pytest
import torch

import i2ckd_mm  # noqa: F401  (shims + registration before mmseg/mmrazor)
from i2ckd_mm import compat
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from tiny_models import make_seg_batch

CONFIG = (Path(__file__).resolve().parents[2] / 'configs' / 'i2ckd' /
          'i2ckd_prelogits_segformer_mit-b5_deeplabv3_r18-d8_8xb2-40k_'
          'cityscapes-512x1024.py')
SIZE = 64


@pytest.fixture(scope='module')
def algo():
    cfg = Config.fromfile(str(CONFIG))
    # no downloads: random teacher, no ImageNet student init
    cfg.model.teacher_ckpt = None
    cfg.model.architecture.pretrained = None
    init_default_scope('mmseg')
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='no teacher_ckpt'):
        model = MODELS.build(cfg.model)
    return model


def test_the_teacher_is_a_transformer_and_the_student_a_cnn(algo):
    assert type(algo.teacher.backbone).__name__ == 'MixVisionTransformer'
    assert type(algo.teacher.decode_head).__name__ == 'SegformerHead'
    assert type(algo.student.backbone).__name__ == 'ResNetV1c'
    # the class count came from the student (19) and matches the teacher
    assert algo.distiller.distill_losses['loss_i2ckd'].num_classes == 19
    assert algo.teacher.decode_head.num_classes == 19


def test_one_cpu_training_step(algo):
    """Under mmcv-lite (the default install, checked first) this step also
    shows that SegFormer calls no compiled mmcv op."""
    assert compat.MMCV_FLAVOUR in ('lite', 'full')
    rec = {}
    hooks = [
        algo.teacher.decode_head.fusion_conv.register_forward_hook(
            lambda m, i, o: rec.__setitem__('t', o.detach())),
        algo.student.decode_head.bottleneck.register_forward_hook(
            lambda m, i, o: rec.__setitem__('s', o.detach())),
    ]
    teacher_before = {
        k: v.clone() for k, v in algo.teacher.state_dict().items()}
    params = [p for p in algo.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01)
    algo.train()
    # SegDataPreProcessor pads to the recipe's 512x1024 crop: a CPU-sized
    # step uses 64x64 inputs instead
    algo.data_preprocessor.size = (SIZE, SIZE)
    batch = algo.data_preprocessor(
        make_seg_batch(n=2, size=SIZE, num_classes=19, seed=0), True)
    losses = algo(**batch, mode='loss')
    for h in hooks:
        h.remove()

    # different strides and channels: 256 x 1/4 (teacher), 128 x 1/8
    assert rec['t'].shape == (2, 256, SIZE // 4, SIZE // 4)
    assert rec['s'].shape == (2, 128, SIZE // 8, SIZE // 8)
    for key in ('distill.loss_i2ckd', 'distill.i2ckd_active',
                'distill.i2ckd_d_pos', 'distill.i2ckd_d_neg',
                'student.decode.loss_ce'):
        assert torch.isfinite(losses[key]), key
    assert losses['distill.i2ckd_triplets'] > 0
    assert losses['distill.loss_i2ckd'] > 0

    total = sum(v for k, v in losses.items() if 'loss' in k)
    optim.zero_grad()
    total.backward()
    conn = algo.distiller.connectors['loss_i2ckd_sfeat'].conv_module.conv
    assert conn.weight.grad.abs().sum() > 0
    assert algo.student.decode_head.bottleneck.conv.weight.grad.abs().sum(
    ) > 0
    optim.step()
    # the teacher is frozen
    assert all(
        torch.equal(v, teacher_before[k])
        for k, v in algo.teacher.state_dict().items())


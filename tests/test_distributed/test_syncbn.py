"""The real configs use SyncBN: a distillation step with SyncBN student and
teacher works on CPU in one process (no process group: torch's
SyncBatchNorm then runs plain batch norm) and equals the same step with BN.
With a CPU process group torch's SyncBatchNorm refuses CPU tensors (shown in
test_global_prototypes.py), so multi-process CPU runs swap SyncBN for BN."""
import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import torch
import torch.distributed as dist
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmrazor.registry import MODELS
from mmseg.structures import SegDataSample


def _seg_model(width, norm):
    norm_cfg = dict(type=norm, requires_grad=True)
    return dict(
        _scope_='mmseg',
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[0., 0., 0.], std=[1., 1., 1.],
            size=(32, 32), pad_val=0, seg_pad_val=255),
        backbone=dict(
            type='ResNetV1c', depth=18, base_channels=width,
            stem_channels=width, num_stages=4, out_indices=(3, ),
            dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=norm_cfg,
            contract_dilation=True),
        decode_head=dict(
            type='FCNHead', in_channels=8 * width, in_index=0,
            channels=2 * width, num_convs=1, concat_input=False,
            dropout_ratio=0.0, num_classes=4, norm_cfg=norm_cfg,
            align_corners=False),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def _algorithm(norm):
    return MODELS.build(ConfigDict(
        type='I2CKDDistill',
        architecture=_seg_model(8, norm),
        teacher=_seg_model(16, norm),
        distiller=dict(
            type='GTAwareDistiller',
            student_recorders=dict(
                feat=dict(type='ModuleOutputs', source='decode_head.convs')),
            teacher_recorders=dict(
                feat=dict(type='ModuleOutputs', source='decode_head.convs')),
            connectors=dict(sfeat=dict(
                type='I2CKDConnector', in_channels=16, out_channels=32,
                norm=True)),
            distill_losses=dict(
                loss_i2ckd=dict(type='I2CKDLoss', num_classes=4)),
            loss_forward_mappings=dict(loss_i2ckd=dict(
                preds_S=dict(from_student=True, recorder='feat',
                             connector='sfeat'),
                preds_T=dict(from_student=False, recorder='feat'),
                gt=dict(from_data='gt_sem_seg'))))))


def test_distill_step_with_syncbn_on_cpu_equals_bn():
    assert not dist.is_initialized()
    sync = _algorithm('SyncBN')
    assert any(isinstance(m, torch.nn.SyncBatchNorm)
               for m in sync.student.modules())
    assert any(isinstance(m, torch.nn.SyncBatchNorm)
               for m in sync.teacher.modules())
    bn = _algorithm('BN')
    assert not any(isinstance(m, torch.nn.SyncBatchNorm)
                   for m in bn.modules())
    # same weights and running statistics (teacher BN stats too)
    bn.load_state_dict(sync.state_dict())
    teacher_before = {k: v.clone()
                      for k, v in sync.teacher.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), generator=g,
                              dtype=torch.uint8) for _ in range(2)],
        data_samples=[SegDataSample(gt_sem_seg=PixelData(
            data=torch.randint(0, 4, (1, 32, 32), generator=g)))
            for _ in range(2)])
    results = []
    for model in (sync, bn):
        model.train()
        losses = model(**model.data_preprocessor(data, True), mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        results.append((losses, dict(model.named_parameters())))
    (l_sync, p_sync), (l_bn, p_bn) = results
    assert l_sync['distill.i2ckd_triplets'] > 0
    for key in ('student.decode.loss_ce', 'distill.loss_i2ckd'):
        torch.testing.assert_close(l_sync[key], l_bn[key])
    for name, p in p_bn.items():
        if p.requires_grad:
            torch.testing.assert_close(p_sync[name].grad, p.grad,
                                       msg=name)
    # the teacher stayed frozen: eval-mode SyncBN kept its statistics
    for k, v in sync.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k], rtol=0, atol=0)
    assert all(not m.training for m in sync.teacher.modules())

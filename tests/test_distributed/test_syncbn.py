"""The real configs use SyncBN: a distillation step with SyncBN student and
teacher works on CPU in one process (no process group: torch's
SyncBatchNorm then runs plain batch norm) and equals the same step with BN.
With a CPU process group torch's SyncBatchNorm refuses CPU tensors (shown in
test_global_prototypes.py), so multi-process CPU runs swap SyncBN for BN."""
import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import torch
import torch.distributed as dist

from tiny_models import make_seg_batch, tiny_distill, tiny_segmentor


def _algorithm(norm):
    return tiny_distill(student=tiny_segmentor(8, norm=norm),
                        teacher=tiny_segmentor(16, norm=norm),
                        connector_norm=True)


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
    data = make_seg_batch()
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

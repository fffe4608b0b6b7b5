"""I2CKDLoss under mixed precision: bf16/fp16 features are summed in fp32,
the loss is fp32, and a whole I2CKDDistill step under bf16 autocast is
finite. (fp16 autocast is a CUDA feature: tested when a GPU is present.)"""
import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch

from i2ckd_mm.models.losses.i2ckd_loss import I2CKDLoss
from i2ckd_mm.models.losses.prototypes import class_prototypes
from tiny_models import make_seg_batch, tiny_distill

# bf16 keeps 8 significand bits: unit roundoff 2^-9, so one rounding of a
# feature changes it by at most 2^-8 relative (with headroom for the conv's
# own bf16 products). Means and Euclidean norms are 1-Lipschitz, so each
# prototype distance d changes by <= 2^-8 * d, and each hinge
# max(0, d_pos - d_neg + m) (1-Lipschitz) by <= 2^-8 (d_pos + d_neg).
BF16_REL = 2.0**-8


def _features(dtype, seed=0, n=2, c=4, size=64):
    """Features ~3 +- 0.1 (large sums, small spread: where low-precision
    accumulation fails) and labels of two classes + an ignored band."""
    g = torch.Generator().manual_seed(seed)
    s = 3 + 0.1 * torch.randn(n, c, size, size, generator=g)
    t = 3 + 0.1 * torch.randn(n, c, size, size, generator=g)
    y = torch.randint(0, 3, (n, size, size), generator=g)
    y[:, :4] = 255
    return s.to(dtype), t.to(dtype), y


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_prototypes_are_summed_in_fp32(dtype):
    s, _, y = _features(dtype)
    protos, _ = class_prototypes(s, y, 3)
    assert protos.dtype == torch.float32
    # The same (already rounded) values summed in fp32: identical.
    ref, _ = class_prototypes(s.float(), y, 3)
    torch.testing.assert_close(protos, ref, rtol=0, atol=1e-6)
    # Control: summing in the low dtype is visibly worse, so the bound
    # above would catch a regression to low-precision accumulation.
    n, c, h, w = s.shape
    flat, yy = s.reshape(n, c, h * w), y.reshape(n, 1, h * w).clone()
    yy[yy == 255] = 3
    naive = flat.new_zeros(n, c, 4).scatter_add(2, yy.expand(n, c, h * w),
                                                flat)[..., :3]
    counts = torch.stack([(y == k).sum((1, 2)) for k in range(3)], 1)
    naive = (naive.float() / counts[:, None]).transpose(1, 2)
    assert (naive - ref).abs().max() > 10 * 1e-6


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('kwargs', [dict(), dict(pull_weight=1.0,
                                                 normalize=True,
                                                 margin=0.2)])
def test_loss_of_low_precision_features_matches_fp32(dtype, kwargs):
    s, t, y = _features(dtype)
    s.requires_grad_()
    loss_fn = I2CKDLoss(num_classes=3, **kwargs)
    loss = loss_fn(s, t, y)
    assert loss.dtype == torch.float32
    ref = loss_fn(s.detach().float(), t.float(), y)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()


def test_loss_under_bf16_autocast_matches_fp32():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    y = torch.randint(0, 4, (2, 32, 32), generator=g)
    conv_s, conv_t = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(
        3, 8, 3, padding=1)
    loss_fn = I2CKDLoss(num_classes=4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        fs, ft = conv_s(x), conv_t(x)
        assert fs.dtype == torch.bfloat16
        loss = loss_fn(fs, ft, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # the same bf16 features outside autocast, in fp32: identical math
    torch.testing.assert_close(
        loss, loss_fn(fs.detach().float(), ft.detach().float(), y),
        rtol=1e-5, atol=1e-6)
    # against the all-fp32 forward: within the bf16 rounding bound
    ref = loss_fn(conv_s(x), conv_t(x), y)
    stats = loss_fn.last_stats
    bound = 2 * BF16_REL * float(stats['d_pos'] + stats['d_neg'])
    assert abs(loss.item() - ref.item()) <= bound, (loss, ref, bound)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv_s.parameters())


def test_i2ckd_distill_step_under_bf16_autocast_is_finite():
    torch.manual_seed(0)
    # ResNetV1c-18 students/teachers 8 and 16 channels wide, 32x32
    model = tiny_distill()
    model.train()
    batch = model.data_preprocessor(make_seg_batch(), True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**batch, mode='loss')
    assert losses['distill.loss_i2ckd'].dtype == torch.float32
    assert losses['distill.i2ckd_triplets'] > 0
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='fp16 autocast needs a CUDA GPU; none here')
def test_loss_under_fp16_cuda_autocast_matches_fp32():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=g).cuda()
    y = torch.randint(0, 4, (2, 64, 64), generator=g).cuda()
    conv_s = torch.nn.Conv2d(3, 8, 3, padding=1).cuda()
    conv_t = torch.nn.Conv2d(3, 8, 3, padding=1).cuda()
    loss_fn = I2CKDLoss(num_classes=4)
    with torch.autocast('cuda', dtype=torch.float16):
        fs, ft = conv_s(x), conv_t(x)
        assert fs.dtype == torch.float16
        loss = loss_fn(fs, ft, y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss, loss_fn(fs.detach().float(), ft.detach().float(), y),
        rtol=1e-5, atol=1e-6)
    ref = loss_fn(conv_s(x), conv_t(x), y)
    stats = loss_fn.last_stats
    # fp16 has 11 significand bits: a tighter bound than bf16's
    bound = 2 * 2.0**-10 * float(stats['d_pos'] + stats['d_neg'])
    assert abs(loss.item() - ref.item()) <= bound

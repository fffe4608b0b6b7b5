"""PixelRowsConnector: with it on both sides, MMRazor's DISTLoss is DIST's
segmentation loss (github.com/hunto/DIST_KD, segmentation/losses/
dist_kd.py), checked against a reference written here from DIST's formulas
on the (N, C, H, W) logits themselves."""
import pytest
import torch

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from mmrazor.models.losses import DISTLoss
from mmrazor.registry import MODELS

from i2ckd_mm.models.architectures.connectors import PixelRowsConnector

EPS = 1e-8  # DIST's (and MMRazor's) eps in the cosine's denominator


def _pearson(a, b, dims):
    """Pearson correlation of a and b along ``dims`` (eps as in DIST)."""
    a = a - a.mean(dim=dims, keepdim=True)
    b = b - b.mean(dim=dims, keepdim=True)
    return (a * b).sum(dim=dims) / (
        a.square().sum(dim=dims).sqrt() * b.square().sum(dim=dims).sqrt() +
        EPS)


def dist_seg_reference(logits_s, logits_t, tau=1.0, inter=1.0, intra=1.0):
    """DIST on segmentation logits (N, C, H, W), written on the 4-D tensors
    (no reshape): softmax over the classes at tau;
    inter = 1 - mean over the pixels of the Pearson correlation over the
    classes at each pixel; intra = 1 - mean over the classes of the Pearson
    correlation over all the N*H*W pixels of the batch; both times tau**2."""
    p_s = (logits_s / tau).softmax(dim=1)
    p_t = (logits_t / tau).softmax(dim=1)
    inter_loss = 1 - _pearson(p_s, p_t, dims=(1, )).mean()  # (N, H, W)
    intra_loss = 1 - _pearson(p_s, p_t, dims=(0, 2, 3)).mean()  # (C, )
    return tau**2 * (inter * inter_loss + intra * intra_loss)


def _dist_through_connector(logits_s, logits_t, **loss_kwargs):
    conn = MODELS.build(dict(type='PixelRowsConnector'))
    return DISTLoss(**loss_kwargs)(conn(logits_s), conn(logits_t))


def _logits(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(shape, generator=g, dtype=dtype)


def test_rows_are_the_pixels_in_order():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    rows = PixelRowsConnector()(x)
    assert rows.shape == (2 * 4 * 5, 3)
    for n in range(2):
        for h in range(4):
            for w in range(5):
                assert torch.equal(rows[n * 20 + h * 5 + w], x[n, :, h, w])
    assert list(PixelRowsConnector().parameters()) == []


@pytest.mark.parametrize('shape,tau,weights', [
    ((2, 19, 8, 16), 1.0, (1.0, 1.0)),   # DIST's settings, Cityscapes classes
    ((3, 6, 5, 7), 1.0, (1.0, 1.0)),
    ((1, 6, 4, 4), 2.0, (1.0, 1.0)),     # one image: intra over its pixels
    ((4, 11, 3, 5), 4.0, (2.0, 0.5)),
])
def test_dist_loss_through_connector_is_dist_segmentation_loss(
        shape, tau, weights):
    s, t = _logits(shape, 0), _logits(shape, 1)
    kwargs = dict(tau=tau, inter_loss_weight=weights[0],
                  intra_loss_weight=weights[1])
    s_ref = s.clone().requires_grad_()
    s_mm = s.clone().requires_grad_()
    ref = dist_seg_reference(s_ref, t, tau, *weights)
    got = _dist_through_connector(s_mm, t, **kwargs)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    grad_ref, = torch.autograd.grad(ref, s_ref)
    grad_mm, = torch.autograd.grad(got, s_mm)
    assert grad_ref.abs().max() > 1e-4  # not a vanishing gradient
    torch.testing.assert_close(grad_mm, grad_ref, rtol=1e-6, atol=1e-9)


def test_without_the_connector_the_intra_term_is_not_dists():
    """Why the connector exists: on (N, C, H, W) logits DISTLoss correlates
    each class over the N images at each pixel position."""
    s, t = _logits((2, 6, 5, 7), 0), _logits((2, 6, 5, 7), 1)
    inter_only = dict(inter_loss_weight=1.0, intra_loss_weight=0.0)
    intra_only = dict(inter_loss_weight=0.0, intra_loss_weight=1.0)
    # inter-class term: the same with or without rows
    torch.testing.assert_close(
        DISTLoss(**inter_only)(s, t), _dist_through_connector(
            s, t, **inter_only), rtol=0, atol=1e-12)
    # intra-class term: DIST's only through the connector
    ref = dist_seg_reference(s, t, inter=0.0, intra=1.0)
    assert (DISTLoss(**intra_only)(s, t) - ref).abs() > 1e-2
    torch.testing.assert_close(
        _dist_through_connector(s, t, **intra_only), ref, rtol=0, atol=1e-6)


def test_gradcheck_float64():
    s = _logits((2, 4, 3, 3), 2).requires_grad_()
    t = _logits((2, 4, 3, 3), 3)
    assert torch.autograd.gradcheck(
        lambda x: _dist_through_connector(x, t), (s, ))


def test_teacher_gets_no_gradient_and_student_rows_keep_dtype():
    s = _logits((2, 4, 3, 3), 0, torch.float32).requires_grad_()
    t = _logits((2, 4, 3, 3), 1, torch.float32).requires_grad_()
    assert PixelRowsConnector()(s).dtype == torch.float32
    _dist_through_connector(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None  # DISTLoss detaches the teacher


@pytest.mark.parametrize('shape', [(8, 5), (2, 3, 4), (1, 2, 3, 4, 5)])
def test_not_four_dims_is_an_error_naming_the_shape(shape):
    with pytest.raises(ValueError,
                       match=r'N x C x H x W.*' + str(shape).replace(
                           '(', r'\(').replace(')', r'\)')):
        PixelRowsConnector()(torch.zeros(shape))

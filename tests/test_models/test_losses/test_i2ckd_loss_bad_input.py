"""I2CKDLoss on bad or degenerate input: a clear error, or a finite loss
whose gradient is finite (zero where nothing is to be learned)."""
import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import pytest
import torch
import torch.nn.functional as F

from i2ckd_mm.models.losses.i2ckd_loss import I2CKDLoss

IGNORE = 255


def _feats(n=2, c=6, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    t = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    return s.requires_grad_(), t


def _reference(s, t, y, margin=1.0):
    """Loop over images and class pairs with torch's TripletMarginLoss."""
    trip = torch.nn.TripletMarginLoss(margin=margin, reduction='none')
    terms = []
    for n in range(s.shape[0]):
        classes = [k for k in torch.unique(y[n]).tolist() if k != IGNORE]
        ps = {k: s[n][:, y[n] == k].mean(1) for k in classes}
        pt = {k: t[n][:, y[n] == k].mean(1) for k in classes}
        for k in classes:
            for j in classes:
                if j != k:
                    terms.append(trip(ps[k][None], pt[k][None], pt[j][None]))
    return torch.cat(terms).mean()


def _assert_zero_safe(loss, s):
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


@pytest.mark.parametrize('kwargs', [
    dict(), dict(prototype_scope='batch'), dict(symmetric=True),
    dict(pull_weight=1.0, normalize=True), dict(negatives='hardest')
])
def test_all_pixels_ignore_gives_zero_loss_and_zero_grad(kwargs):
    s, t = _feats()
    y = torch.full((2, 4, 4), IGNORE)
    loss = I2CKDLoss(num_classes=3, **kwargs)(s, t, y)
    assert loss.item() == 0.0
    _assert_zero_safe(loss, s)
    assert (s.grad == 0).all()


def test_one_class_only_has_no_triplet_but_pull_still_acts():
    s, t = _feats()
    y = torch.full((2, 4, 4), 2)
    y[0, 0] = IGNORE
    loss_fn = I2CKDLoss(num_classes=3)
    loss = loss_fn(s, t, y)
    assert loss.item() == 0.0 and loss_fn.last_stats['triplets'] == 0
    _assert_zero_safe(loss, s)
    assert (s.grad == 0).all()
    # The pull term needs no second class: 0.5 * mean_n ||Ps_n - Pt_n||^2.
    s.grad = None
    loss = I2CKDLoss(num_classes=3, pull_weight=0.5)(s, t, y)
    expected = 0
    for n in range(2):
        m = y[n] == 2
        diff = s[n][:, m].mean(1) - t[n][:, m].mean(1) + 1e-6
        expected = expected + 0.5 * diff.pow(2).sum() / 2
    torch.testing.assert_close(loss, expected.detach())
    _assert_zero_safe(loss, s)
    assert s.grad.abs().sum() > 0


def test_classes_absent_from_the_whole_batch_take_no_part():
    s, t = _feats(h=6, w=6)
    g = torch.Generator().manual_seed(1)
    # only classes 3 and 11 of 19 occur, plus ignore
    y = torch.tensor([3, 11, IGNORE])[torch.randint(0, 3, (2, 6, 6),
                                                    generator=g)]
    y[:, 0, 0], y[:, 0, 1] = 3, 11  # both present in both images
    loss = I2CKDLoss(num_classes=19)(s, t, y)
    torch.testing.assert_close(loss, _reference(s, t, y).detach())
    # the same as if the classes were numbered 0 and 1 of 2
    y2 = torch.where(y == 3, 0, torch.where(y == 11, 1, y))
    torch.testing.assert_close(loss, I2CKDLoss(num_classes=2)(s, t, y2))
    _assert_zero_safe(loss, s)


@pytest.mark.parametrize('bad,ignore,num', [(19, IGNORE, 19), (-1, IGNORE, 19),
                                            (255, -1, 19), (40, IGNORE, 19)])
def test_labels_outside_classes_and_not_ignore_raise(bad, ignore, num):
    s, t = _feats()
    y = torch.zeros(2, 4, 4, dtype=torch.long)
    y[1, 2, 3] = bad
    with pytest.raises(ValueError,
                       match=rf'class ids \[{bad}\].*\[0, {num}\)'):
        I2CKDLoss(num_classes=num, ignore_index=ignore)(s, t, y)


def test_float_labels_raise():
    s, t = _feats()
    with pytest.raises(TypeError, match='integer'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 4, 4))


def test_channel_mismatch_without_connector_names_the_fix():
    s, _ = _feats(c=6)
    _, t = _feats(c=8)
    with pytest.raises(ValueError, match=r'6 channels.*8.*I2CKDConnector'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 4, 4, dtype=torch.long))


@pytest.mark.parametrize('s_size', [(4, 4), (16, 16), (8, 8)])
def test_feature_size_mismatch_resizes_student_to_teacher(s_size):
    """Student features of another size are bilinearly resized to the
    teacher's (h', w'); the labels are resized to (h', w') too."""
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 5, *s_size, generator=g, dtype=torch.float64,
                    requires_grad=True)
    t = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 32, 32), generator=g)
    loss = I2CKDLoss(num_classes=3)(s, t, y)
    s8 = F.interpolate(s, size=(8, 8), mode='bilinear', align_corners=False)
    y8 = y[:, ::4, ::4]  # nearest 32 -> 8 takes source pixel 4 * i
    torch.testing.assert_close(loss, _reference(s8, t, y8))
    _assert_zero_safe(loss, s)
    assert s.grad.abs().sum() > 0


def test_label_aspect_or_batch_mismatch_raise():
    s, t = _feats(h=8, w=8)
    with pytest.raises(ValueError, match='label size 32x64 does not match'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 32, 64,
                                                   dtype=torch.long))
    with pytest.raises(ValueError, match='batch sizes differ'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(3, 32, 32,
                                                   dtype=torch.long))
    with pytest.raises(ValueError, match='squeeze'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 1, 32, 32,
                                                   dtype=torch.long))
    with pytest.raises(ValueError, match='empty spatial size'):
        I2CKDLoss(num_classes=3)(s[..., :0], t[..., :0],
                                 torch.zeros(2, 8, 0, dtype=torch.long))


@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
@pytest.mark.parametrize('which', ['preds_S', 'preds_T'])
def test_nonfinite_features_raise_naming_the_tensor(value, which):
    s, t = _feats()
    y = torch.randint(0, 3, (2, 4, 4))
    with torch.no_grad():
        (s if which == 'preds_S' else t)[1, 2, 0, 3] = value
    with pytest.raises(FloatingPointError, match=rf'{which} \('):
        I2CKDLoss(num_classes=3)(s, t, y)


@pytest.mark.parametrize('which', ['preds_S', 'preds_T'])
def test_nonfinite_skip_returns_zero_with_zero_grad(which):
    s, t = _feats()
    y = torch.randint(0, 3, (2, 4, 4),
                      generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (s if which == 'preds_S' else t)[0, 0, 0, 0] = float('nan')
    loss_fn = I2CKDLoss(num_classes=3, nonfinite='skip', pull_weight=1.0)
    loss = loss_fn(s, t, y)
    assert loss.item() == 0.0 and loss_fn.last_stats['skipped'] == 1
    _assert_zero_safe(loss, s)
    assert (s.grad == 0).all()  # NaN never reaches the parameters
    # the next finite step is computed normally again
    s2, t2 = _feats(seed=3)
    assert loss_fn(s2, t2, y).item() > 0 and 'skipped' not in \
        loss_fn.last_stats


@pytest.mark.parametrize('scope', ['image', 'batch', 'global'])
def test_empty_batch_gives_zero_loss(scope):
    s, t = _feats(n=0)
    loss = I2CKDLoss(num_classes=3, prototype_scope=scope)(
        s, t, torch.zeros(0, 8, 8, dtype=torch.long))
    assert loss.item() == 0.0
    _assert_zero_safe(loss, s)
    assert s.grad.shape == s.shape


@pytest.mark.parametrize('kwargs,name', [
    (dict(prototype_scope='rank'), 'prototype_scope'),
    (dict(distance='l1'), 'distance'),
    (dict(negatives='semi'), 'negatives'),
    (dict(nonfinite='ignore'), 'nonfinite'),
    (dict(label_resize='bilinear'), 'label_resize'),
])
def test_bad_options_name_the_option(kwargs, name):
    with pytest.raises(ValueError, match=name):
        I2CKDLoss(num_classes=3, **kwargs)
    with pytest.raises(ValueError, match='num_classes'):
        I2CKDLoss(num_classes=0)

"""Property-based tests of I2CKDLoss over random shapes, classes and
ignore masks (hypothesis)."""
import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from i2ckd_mm.models.losses.i2ckd_loss import I2CKDLoss

IGNORE = 255
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def batches(draw, same_size=False, many_classes=False):
    """Random (student, teacher, labels, num_classes, generator);
    ``many_classes`` draws >= 2 classes, >= 2x2 pixels and little ignore so
    that most examples have triplets."""
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 6))
    lo = 2 if many_classes else 1
    h, w = draw(st.integers(lo, 6)), draw(st.integers(lo, 6))
    num_classes = draw(st.integers(lo, 5))
    scale = 1 if same_size else draw(st.sampled_from([1, 2, 4]))
    ignore_p = draw(st.sampled_from([0.0, 0.3] if many_classes else
                                    [0.0, 0.3, 0.9, 1.0]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n, h * scale, w * scale), generator=g)
    y[torch.rand(y.shape, generator=g) < ignore_p] = IGNORE
    s = torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * \
        draw(st.sampled_from([1e-3, 1.0, 50.0]))
    t = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    return s, t, y, num_classes, g


OPTIONS = st.fixed_dictionaries(
    dict(
        prototype_scope=st.sampled_from(['image', 'batch']),
        normalize=st.booleans(),
        distance=st.sampled_from(['euclidean', 'cosine']),
        negatives=st.sampled_from(['all', 'hardest']),
        symmetric=st.booleans(),
        pull_weight=st.sampled_from([0.0, 0.5]),
        margin=st.sampled_from([0.0, 0.2, 1.0]),
        label_resize=st.sampled_from(['nearest', 'mode'])))


@SETTINGS
@given(batch=batches(), opts=OPTIONS)
def test_loss_is_finite_and_non_negative_with_finite_grad(batch, opts):
    s, t, y, num_classes, _ = batch
    s.requires_grad_()
    loss = I2CKDLoss(num_classes=num_classes, **opts)(s, t, y)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert torch.isfinite(s.grad).all()


@SETTINGS
@given(
    batch=batches(same_size=True, many_classes=True),
    scope=st.sampled_from(['image', 'batch']),
    negatives=st.sampled_from(['all', 'hardest']),
    symmetric=st.booleans(),
    margin=st.sampled_from([0.1, 1.0, 5.0]))
def test_zero_when_prototypes_match_and_classes_are_separated(
        batch, scope, negatives, symmetric, margin):
    """Each class's pixels spread around one vector v_k with zero mean noise
    (per image and class), the same v_k for student and teacher: the
    prototypes are equal, and |v_k - v_j| >= 2 * margin > margin."""
    _, t, y, num_classes, g = batch
    n, c, h, w = t.shape
    direction = torch.randn(c, generator=g, dtype=torch.float64)
    direction = direction / direction.norm()
    spacing = 2.0 * margin
    centres = torch.arange(num_classes, dtype=torch.float64)[:, None] * \
        spacing * direction  # (K, C): class k sits at k * spacing
    s = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    t = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    for feats in (s, t):
        for i in range(n):
            for k in range(num_classes):
                m = y[i] == k
                if m.any():
                    noise = feats[i][:, m]
                    feats[i][:, m] = centres[k][:, None] + noise - \
                        noise.mean(1, keepdim=True)
    loss_fn = I2CKDLoss(num_classes=num_classes, prototype_scope=scope,
                        negatives=negatives, symmetric=symmetric,
                        margin=margin)
    loss = loss_fn(s, t, y)
    assert loss.item() == 0.0
    # Control: a teacher whose prototypes all coincide makes every triplet's
    # hinge exactly the margin, so the zero above is not trivial.
    if loss_fn.last_stats['triplets'] > 0:
        assert loss_fn(s, torch.zeros_like(t), y).item() >= 0.5 * margin


@SETTINGS
@given(batch=batches(), opts=OPTIONS, perm_seed=st.integers(0, 1000))
def test_invariant_to_permuting_images(batch, opts, perm_seed):
    s, t, y, num_classes, _ = batch
    perm = torch.randperm(s.shape[0],
                          generator=torch.Generator().manual_seed(perm_seed))
    loss_fn = I2CKDLoss(num_classes=num_classes, **opts)
    torch.testing.assert_close(
        loss_fn(s, t, y), loss_fn(s[perm], t[perm], y[perm]),
        rtol=1e-10, atol=1e-12)

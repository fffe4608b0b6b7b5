"""I2CKDLoss (i2ckd_mm/models/losses/i2ckd_loss.py).

Expected values come from hand computation, from torch.nn's triplet losses,
or from the one independent loop reference, ``tools/toy/reference_i2ckd.py``.
Sections: reference and torch.nn equivalence, every option, hand-computed
cases, gradients, edge cases, bad input, non-finite features (both
prototype paths), ``num_classes`` set later, ``prototypes()``, mixed
precision, and hypothesis properties.
"""
import math
import os.path as osp

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from toy import reference_i2ckd as ref
from load_file import load_file
from i2ckd_mm.models.losses import I2CKDLoss

IGNORE = 255
# the benchmarks' operator and host-wait counter (one definition)
op_counts = load_file('bench_harness', osp.join(
    osp.dirname(__file__), '..', '..', '..', 'benchmarks',
    'harness.py')).op_counts


def random_case(seed, n=2, c=3, h=6, w=6, num_classes=5,
                dtype=torch.float64):
    """Ignore pixels, an absent class, and a different class set per image.

    Image 0 holds classes {0, 1, 2} (6 triplets), image 1 holds {0, 3}
    (2 triplets); class 4 is absent everywhere.
    """
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    t = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    labels = torch.empty(n, h, w, dtype=torch.long)
    labels[0] = torch.randint(0, 3, (h, w), generator=g)
    labels[1] = torch.tensor([0, 3])[torch.randint(0, 2, (h, w), generator=g)]
    labels[torch.rand(n, h, w, generator=g) < 0.25] = IGNORE
    for img, classes in ((0, [0, 1, 2]), (1, [0, 3])):  # keep them present
        for i, k in enumerate(classes):
            labels[img, i, 0] = k
    return s, t, labels, num_classes


def close(a, b):
    torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=1e-6)


# ------------------------------------- reference and torch.nn equivalence
@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('margin', [1.0, 3.0])
def test_default_equals_reference(seed, margin):
    s, t, labels, k = random_case(seed, dtype=torch.float32)
    loss = I2CKDLoss(num_classes=k, margin=margin)(s, t, labels)
    expected = ref.loss(s.double(), t.double(), labels, k, margin=margin)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    close(loss, expected)
    assert expected > 0


@pytest.mark.parametrize('distance', ['euclidean', 'cosine'])
def test_equals_torch_triplet_margin_loss(distance):
    """The hinge and distance are torch.nn's: TripletMarginLoss (p=2, its
    eps convention) or TripletMarginWithDistanceLoss(1 - cos), applied to
    the reference's (anchor, positive, negative) prototypes."""
    s, t, labels, k = random_case(0)
    ps, counts = ref.prototypes(s, labels, k)
    pt, _ = ref.prototypes(t, labels, k)
    trips = ref.triplets(ps, pt, counts > 0)
    assert len(trips) == 8  # 6 + 2, see random_case
    anc = torch.stack([ps[g, a] for g, a, _ in trips])
    pos = torch.stack([pt[g, a] for g, a, _ in trips])
    neg = torch.stack([pt[g, j] for g, _, j in trips])
    if distance == 'euclidean':
        crit = torch.nn.TripletMarginLoss(margin=1.5, p=2)
    else:
        crit = torch.nn.TripletMarginWithDistanceLoss(
            distance_function=lambda a, b: 1 - F.cosine_similarity(a, b),
            margin=1.5)
    loss = I2CKDLoss(num_classes=k, margin=1.5, distance=distance)(s, t,
                                                                    labels)
    close(loss, crit(anc, pos, neg))


def test_one_global_mean_over_all_triplets():
    s, t, labels, k = random_case(0)
    loss = I2CKDLoss(num_classes=k, margin=3.0)(s, t, labels)
    per_image = [
        ref.loss(s[i:i + 1], t[i:i + 1], labels[i:i + 1], k, margin=3.0)
        for i in range(2)
    ]
    # 6 + 2 triplets: weighted 6/8 and 2/8, not the mean of image means
    close(loss, (6 * per_image[0] + 2 * per_image[1]) / 8)
    assert abs(float(loss) - float(sum(per_image) / 2)) > 1e-3


# -------------------------------------------------------------- the options
OPTIONS = [
    dict(normalize=True),
    dict(distance='cosine'),
    dict(negatives='hardest'),
    # (with every hinge active the symmetric term equals the plain one: the
    # negative distances are the same set; a small margin leaves some off)
    dict(symmetric=True, margin=0.2),
    dict(pull_weight=0.7),
    dict(pull_weight=0.7, pull_type='linear'),
    dict(prototype_scope='batch'),
    dict(normalize=True, negatives='hardest', symmetric=True, margin=0.2,
         pull_weight=1.0),
    dict(distance='cosine', negatives='hardest', symmetric=True, margin=0.5),
    dict(prototype_scope='batch', negatives='hardest', pull_weight=0.3),
    # the shipped configs' variant
    dict(normalize=True, margin=0.2, pull_weight=1.0),
    # + the pixel-to-prototype term, per image and per batch
    dict(normalize=True, margin=0.2, pull_weight=1.0, pixel_weight=0.8),
    dict(prototype_scope='batch', pixel_weight=1.5, pixel_tau=0.5),
    dict(normalize=True, margin=0.2, pixel_weight=1.0,
         pixel_prototypes='teacher'),
]


@pytest.mark.parametrize('opts', OPTIONS)
@pytest.mark.parametrize('seed', [0, 1])
def test_options_equal_reference(opts, seed):
    """Value and diagnostics of every option against the reference; the
    option changes the value (so the comparison can tell them apart)."""
    s, t, labels, k = random_case(seed)
    crit = I2CKDLoss(num_classes=k, **opts)
    loss = crit(s, t, labels)
    expected, stats = ref.loss_and_stats(s, t, labels, k, **opts)
    close(loss, expected)
    plain = ref.loss(s, t, labels, k, margin=opts.get('margin', 1.0))
    assert abs(float(expected) - float(plain)) > 1e-4 and float(expected) > 0
    got = crit.last_stats
    assert float(got['triplets']) == stats['triplets']
    keys = ('active', 'd_pos', 'd_neg', 'pull') + (
        ('pixel', ) if opts.get('pixel_weight') else ())
    assert set(keys) <= set(got) and ('pixel' in got) == ('pixel' in stats)
    for key in keys:
        assert float(got[key]) == pytest.approx(stats[key], rel=1e-6,
                                                abs=1e-9), key
    assert all(not v.requires_grad for v in got.values())


@pytest.mark.parametrize('s_size', [(3, 3), (12, 12), (6, 6)])
def test_student_and_labels_resized_to_teacher_size(s_size):
    """Student of another size: bilinear to the teacher's 6x6; labels
    12x12: nearest, so the odd rows (set to class 4) are never read."""
    s, t, labels, k = random_case(6)
    gt = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    gt[:, 1::2] = 4
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, *s_size, generator=g, dtype=torch.float64)
    loss = I2CKDLoss(num_classes=k)(s, t, gt)
    close(loss, ref.loss(s, t, gt, k))
    # the same as the reference on the pixels nearest reads
    s6 = F.interpolate(s, size=(6, 6), mode='bilinear', align_corners=False)
    close(loss, ref.loss(s6, t, labels, k))


def test_label_resize_mode_is_used():
    s, t, labels, k = random_case(8)
    gt = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    gt[:, ::2, ::2] = IGNORE  # nearest would see only ignore
    loss = I2CKDLoss(num_classes=k, label_resize='mode')(s, t, gt)
    close(loss, ref.loss(s, t, gt, k, label_resize='mode'))
    assert float(I2CKDLoss(num_classes=k)(s, t, gt)) == 0.0


def test_classes_absent_from_the_batch_take_no_part():
    # only classes 3 and 11 of 19 occur: the same loss as classes 0, 1 of 2
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    t = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([3, 11, IGNORE])[torch.randint(0, 3, (2, 6, 6),
                                                    generator=g)]
    y[:, 0, 0], y[:, 0, 1] = 3, 11
    loss = I2CKDLoss(num_classes=19)(s, t, y)
    close(loss, ref.loss(s, t, y, 19))
    y2 = torch.where(y == 3, 0, torch.where(y == 11, 1, y))
    torch.testing.assert_close(loss, I2CKDLoss(num_classes=2)(s, t, y2))


# ------------------------------------------------------------ hand-computed
def hand_case():
    """1-D features, 2 classes, one image of 1 x 5 pixels.

    labels   : 0   0   1   1   ignore
    student  : 0   2   2   4   100     -> Ps0 = 1, Ps1 = 3
    teacher  : 2   2   4   6   -100    -> Pt0 = 2, Pt1 = 5
    triplet (k=0): d(Ps0,Pt0)=1, d(Ps0,Pt1)=4
    triplet (k=1): d(Ps1,Pt1)=2, d(Ps1,Pt0)=1
    """
    s = torch.tensor([0., 2., 2., 4., 100.]).view(1, 1, 1, 5)
    t = torch.tensor([2., 2., 4., 6., -100.]).view(1, 1, 1, 5)
    labels = torch.tensor([0, 0, 1, 1, IGNORE]).view(1, 1, 5)
    return s, t, labels


@pytest.mark.parametrize('margin,expected', [
    (1.0, (0 + 2) / 2),  # max(0, 1-4+1)=0, max(0, 2-1+1)=2
    (3.0, (0 + 4) / 2),  # max(0, 1-4+3)=0, 2-1+3=4
    (4.0, (1 + 5) / 2),  # 1-4+4=1, 2-1+4=5
    (0.0, (0 + 1) / 2),
])
def test_hand_computed_two_classes(margin, expected):
    s, t, labels = hand_case()
    loss = I2CKDLoss(num_classes=2, margin=margin)(s, t, labels)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_hand_computed_gradient_and_stats():
    s, t, labels = hand_case()
    s.requires_grad_(True)
    crit = I2CKDLoss(num_classes=2, margin=1.0)
    crit(s, t, labels).backward()
    # L = hinge_1 / 2 with hinge_1 = (5 - Ps1) - (Ps1 - 2) + 1: dL/dPs1 = -1,
    # shared by its 2 pixels; class 0's hinge is inactive; ignore gets 0.
    assert s.grad.view(-1).tolist() == pytest.approx([0, 0, -0.5, -0.5, 0])
    st_ = crit.last_stats
    assert float(st_['active']) == pytest.approx(0.5)  # 1 of 2 triplets
    assert float(st_['d_pos']) == pytest.approx((1 + 2) / 2, abs=1e-5)
    assert float(st_['d_neg']) == pytest.approx((4 + 1) / 2, abs=1e-5)
    assert float(st_['triplets']) == 2
    assert float(st_['pull']) == 0


@pytest.mark.parametrize('pull_type,pull', [('squared', (1 + 4) / 2),
                                            ('linear', (1 + 2) / 2)])
def test_hand_computed_pull(pull_type, pull):
    s, t, labels = hand_case()
    crit = I2CKDLoss(num_classes=2, pull_weight=0.5, pull_type=pull_type)
    loss = crit(s, t, labels)
    assert float(loss) == pytest.approx(1.0 + 0.5 * pull, abs=1e-5)
    assert float(crit.last_stats['pull']) == pytest.approx(pull, abs=1e-5)


def test_hand_computed_hardest_three_classes():
    # Ps = 0, 10, 20; Pt = 1, 12, 13 (one pixel per class), margin 2.
    # k=0: d_pos 1, negatives 12, 13 -> hardest 12: max(0, 1-12+2) = 0
    # k=1: d_pos 2, negatives 9, 3   -> hardest 3:  2-3+2 = 1
    # k=2: d_pos 7, negatives 19, 8  -> hardest 8:  7-8+2 = 1
    # hardest: mean over 3 anchors = 2/3
    s = torch.tensor([0., 10., 20.]).view(1, 1, 1, 3)
    t = torch.tensor([1., 12., 13.]).view(1, 1, 1, 3)
    labels = torch.tensor([[[0, 1, 2]]])
    crit = I2CKDLoss(num_classes=3, margin=2.0, negatives='hardest')
    assert float(crit(s, t, labels)) == pytest.approx(2 / 3, abs=1e-5)
    # all negatives: 6 triplets, only (1, 2) and (2, 1) active -> 2/6
    all_neg = I2CKDLoss(num_classes=3, margin=2.0)(s, t, labels)
    assert float(all_neg) == pytest.approx(2 / 6, abs=1e-5)


@pytest.mark.parametrize('tau', [0.1, 0.5])
def test_hand_computed_pixel_term(tau):
    """Two pixels, one per class, so each prototype is its pixel.

    Student: f0 = (1, 0), f1 = (0, 1): cosines to (P0, P1) are (1, 0) at
    pixel 0 and (0, 1) at pixel 1, q_s = softmax((1, 0) / tau). Teacher:
    both pixels (1, 0), so every cosine is 1 and q_t = (1/2, 1/2). Per pixel
    KL(q_t || q_s) = -log 2 + 1 / (2 tau) + log(1 + exp(-1 / tau)), the same
    at both pixels by symmetry; the ignored third pixel does not count.
    """
    s = torch.tensor([[1., 0., 7.], [0., 1., -3.]]).view(1, 2, 1, 3)
    t = torch.tensor([[1., 1., 5.], [0., 0., 2.]]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, IGNORE]]])
    expected = (-math.log(2) + 0.5 / tau + math.log1p(math.exp(-1 / tau)))
    crit = I2CKDLoss(num_classes=2, pixel_weight=2.0, pixel_tau=tau)
    loss = crit(s, t, labels)
    assert float(crit.last_stats['pixel']) == pytest.approx(expected,
                                                            rel=1e-5)
    base = I2CKDLoss(num_classes=2)(s, t, labels)
    assert float(loss - base) == pytest.approx(2.0 * expected, rel=1e-5)


def test_hand_computed_pixel_term_on_teacher_prototypes():
    """As above, but the student pixels meet the teacher's prototypes,
    Pt0 = Pt1 = (1, 0): cosines (1, 1) at pixel 0 and (0, 0) at pixel 1, so
    q_s = q_t = (1/2, 1/2) and the term is 0 although the student's own
    relations differ (the 'own' term above is not)."""
    s = torch.tensor([[1., 0., 7.], [0., 1., -3.]]).view(1, 2, 1, 3)
    t = torch.tensor([[1., 1., 5.], [0., 0., 2.]]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, IGNORE]]])
    crit = I2CKDLoss(num_classes=2, pixel_weight=1.0,
                     pixel_prototypes='teacher')
    crit(s, t, labels)
    assert float(crit.last_stats['pixel']) == pytest.approx(0, abs=1e-7)
    # a student pixel off the teacher's prototypes: pixel 1 = (0, 1) vs
    # Pt = (1, 0) and (0.6, 0.8) -> cosines (0, 0.8), teacher (1, 0.6)
    t2 = torch.tensor([[1., 0.6, 5.], [0., 0.8, 2.]]).view(1, 2, 1, 3)
    s2 = torch.tensor([[1., 0., 7.], [0., 1., -3.]]).view(1, 2, 1, 3)
    crit(s2, t2, labels)

    def kl(cos_t, cos_s, tau=0.1):
        q_t = torch.softmax(torch.tensor(cos_t) / tau, 0)
        q_s = torch.softmax(torch.tensor(cos_s) / tau, 0)
        return float((q_t * (q_t.log() - q_s.log())).sum())

    # pixel 0 = (1, 0): student cosines (1, 0.6) = teacher's (1, 0.6)
    # pixel 1: teacher pixel (0.6, 0.8) -> (0.6, 1); student (0, 0.8)
    expected = (kl([1., .6], [1., .6]) + kl([.6, 1.], [0., .8])) / 2
    assert float(crit.last_stats['pixel']) == pytest.approx(expected,
                                                            rel=1e-5)


def test_pixel_term_is_zero_when_student_equals_teacher():
    s, t, labels, k = random_case(3)
    crit = I2CKDLoss(num_classes=k, pixel_weight=1.0, normalize=True)
    crit(t.clone(), t, labels)
    assert float(crit.last_stats['pixel']) == pytest.approx(0, abs=1e-12)
    # scaling the student feature changes no cosine
    crit(3.0 * t, t, labels)
    assert float(crit.last_stats['pixel']) == pytest.approx(0, abs=1e-12)
    crit(s, t, labels)
    assert float(crit.last_stats['pixel']) > 0.01


def test_hand_computed_single_class_gives_only_the_pull():
    # one class per image: no triplet, pull = mean_n (Ps_n - Pt_n)^2
    s = torch.tensor([[1., 3.], [0., 0.]]).view(2, 1, 1, 2)
    t = torch.tensor([[0., 0.], [5., 1.]]).view(2, 1, 1, 2)
    labels = torch.tensor([[[1, 1]], [[1, IGNORE]]])
    crit = I2CKDLoss(num_classes=2, pull_weight=2.0)
    # image 0: Ps 2, Pt 0 -> 4; image 1: Ps 0, Pt 5 -> 25; mean 14.5
    assert float(crit(s, t, labels)) == pytest.approx(2.0 * 14.5, rel=1e-5)
    assert float(crit.last_stats['triplets']) == 0


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize('opts', [dict()] + OPTIONS)
def test_gradcheck_float64(opts):
    s, t, labels, k = random_case(7, h=4, w=4)
    s = s.requires_grad_(True)
    crit = I2CKDLoss(num_classes=k, **{'margin': 1.5, **opts})
    assert torch.autograd.gradcheck(lambda x: crit(x, t, labels), (s, ),
                                    eps=1e-6, atol=1e-5)
    assert crit(s, t, labels).dtype == torch.float64


def test_teacher_gets_no_gradient():
    s, t, labels, k = random_case(0)
    s.requires_grad_(True)
    t.requires_grad_(True)
    I2CKDLoss(num_classes=k, symmetric=True)(s, t, labels).backward()
    assert t.grad is None
    assert s.grad.abs().sum() > 0


def test_loss_weight_scales_value_and_gradient():
    s, t, labels, k = random_case(3)
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    l1 = I2CKDLoss(num_classes=k)(s1, t, labels)
    l2 = I2CKDLoss(num_classes=k, loss_weight=2.5)(s2, t, labels)
    (l1 + l2).backward()
    torch.testing.assert_close(l2, 2.5 * l1)
    torch.testing.assert_close(s2.grad, 2.5 * s1.grad)


# --------------------------------------------------------------- edge cases
@pytest.mark.parametrize('opts', [dict()] + OPTIONS[:4] + OPTIONS[6:7])
@pytest.mark.parametrize('case', ['all_ignore', 'single_class'])
def test_no_triplet_gives_finite_zero_loss_and_zero_grad(case, opts):
    s, t, labels, k = random_case(1)
    if case == 'all_ignore':
        labels = torch.full_like(labels, IGNORE)
    else:
        labels = torch.where(labels == IGNORE, labels, 1)
    s.requires_grad_(True)
    crit = I2CKDLoss(num_classes=k, **opts)
    loss = crit(s, t, labels)
    assert loss.requires_grad  # a usable gradient path, not a constant
    loss.backward()
    assert torch.isfinite(loss) and float(loss) == 0.0
    assert torch.isfinite(s.grad).all() and (s.grad == 0).all()
    assert float(crit.last_stats['triplets']) == 0
    assert all(torch.isfinite(v) for v in crit.last_stats.values())


def test_image_with_one_class_adds_no_triplet():
    s, t, labels, k = random_case(2)
    labels[1] = torch.where(labels[1] == IGNORE, labels[1], 3)  # only class 3
    crit = I2CKDLoss(num_classes=k)
    loss = crit(s, t, labels)
    only_first = I2CKDLoss(num_classes=k)(s[:1], t[:1], labels[:1])
    torch.testing.assert_close(loss, only_first)
    assert float(crit.last_stats['triplets']) == 6


@pytest.mark.parametrize('scope', ['image', 'batch', 'global'])
def test_empty_batch_gives_zero_loss(scope):
    s = torch.zeros(0, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = I2CKDLoss(num_classes=3, prototype_scope=scope)(
        s, torch.zeros(0, 6, 4, 4, dtype=torch.float64),
        torch.zeros(0, 8, 8, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad.shape == s.shape


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('name,value', [
    ('prototype_scope', 'pixel'),
    ('label_resize', 'bilinear'),
    ('distance', 'manhattan'),
    ('negatives', 'semi-hard'),
    ('pull_type', 'cubic'),
    ('pixel_prototypes', 'mean'),
    ('nonfinite', 'ignore'),
])
def test_constructor_rejects_unknown_option(name, value):
    with pytest.raises(ValueError, match=rf'{name}.*{value!r}'):
        I2CKDLoss(num_classes=3, **{name: value})


@pytest.mark.parametrize('kwargs', [
    dict(num_classes=0), dict(num_classes=3, margin=-1.0),
    dict(num_classes=3, pull_weight=-0.1),
    dict(num_classes=3, pixel_weight=-1.0),
    dict(num_classes=3, pixel_tau=0.0),
    dict(num_classes=3, pixel_tau=-0.1),
])
def test_constructor_rejects_bad_numbers(kwargs):
    with pytest.raises(ValueError):
        I2CKDLoss(**kwargs)


def _feats(n=2, c=6, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    t = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    return s, t


@pytest.mark.parametrize('bad,ignore,num', [(19, IGNORE, 19), (-1, IGNORE, 19),
                                            (255, -1, 19), (40, IGNORE, 19)])
@pytest.mark.parametrize('resize', ['nearest', 'mode'])
def test_labels_outside_classes_and_not_ignore_raise(bad, ignore, num,
                                                     resize):
    s, t = _feats()
    y = torch.zeros(2, 4, 4, dtype=torch.long)
    y[1, 2, 3] = bad
    crit = I2CKDLoss(num_classes=num, ignore_index=ignore,
                     label_resize=resize)
    message = rf'class ids \[{bad}\].*\[0, {num}\)'
    with pytest.raises(ValueError, match=message):
        crit(s, t, y)  # a direct call: raised at the call
    loss, status = crit.compute(s, t, y)  # no wait: in the status
    with pytest.raises(ValueError, match=message):
        crit.raise_for_status(status)
    with pytest.raises(ValueError, match=message):  # host ints too
        crit.raise_for_status(status.tolist())


def test_float_labels_raise():
    s, t = _feats()
    with pytest.raises(TypeError, match='integer'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 4, 4))


def test_channel_mismatch_without_connector_names_the_fix():
    s, _ = _feats(c=6)
    _, t = _feats(c=8)
    with pytest.raises(ValueError, match=r'6 channels.*8.*I2CKDConnector'):
        I2CKDLoss(num_classes=3)(s, t, torch.zeros(2, 4, 4, dtype=torch.long))


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


# ------------------------------------------------------ non-finite features
# A few classes (the toy datasets) and many (Cityscapes-like, ADE20K-like):
# the one scatter path, with K x K shapes fixed by K.
CLASS_COUNTS = [3, 22]


def _nan_case(seed=0):
    """Labels 0..2 with ignored pixels at (image 1, row 2, cols 0-1)."""
    s, t = _feats(seed=seed)
    y = torch.randint(0, 3, (2, 4, 4),
                      generator=torch.Generator().manual_seed(seed))
    y[1, 2, :2] = IGNORE
    return s, t, y


@pytest.mark.parametrize('k', CLASS_COUNTS)
@pytest.mark.parametrize('which', ['preds_S', 'preds_T'])
@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_nonfinite_at_ignored_pixel_does_not_matter(k, which, value):
    s, t, y = _nan_case()
    crit = I2CKDLoss(num_classes=k, pull_weight=0.5, pixel_weight=0.5)
    clean = crit(s, t, y)
    s = s.clone().requires_grad_(True)
    with torch.no_grad():
        (s if which == 'preds_S' else t)[1, 3, 2, 1] = value  # ignored
    loss, status = crit.compute(s, t, y)
    assert tuple(status.tolist()) == I2CKDLoss.STATUS_CLEAR
    assert crit.raise_for_status(status) is False
    torch.testing.assert_close(loss, clean)
    close(loss, ref.loss(s.detach().nan_to_num(0, 0, 0), t.nan_to_num(
        0, 0, 0), y, k, pull_weight=0.5, pixel_weight=0.5))
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad[1, :, 2, 1].eq(0).all()


@pytest.mark.parametrize('k', CLASS_COUNTS)
@pytest.mark.parametrize('which', ['preds_S', 'preds_T'])
@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_nonfinite_at_labelled_pixel_raises_naming_the_tensor(
        k, which, value):
    s, t, y = _nan_case()
    s.requires_grad_(True)
    with torch.no_grad():
        (s if which == 'preds_S' else t)[1, 2, 0, 3] = value  # labelled
    crit = I2CKDLoss(num_classes=k, pull_weight=1.0)
    loss, status = crit.compute(s, t, y)  # no wait: the loss is zero ...
    loss.backward()
    assert loss.item() == 0.0 and (s.grad == 0).all()  # ... nothing lost
    message = (rf'{which} \(.*labelled pixel.*shape '
               r'\(2, 6, 4, 4\), dtype torch.float64')
    with pytest.raises(FloatingPointError, match=message):
        crit.raise_for_status(status)
    with pytest.raises(FloatingPointError, match=message):
        crit(s, t, y)  # a direct call raises at the call


@pytest.mark.parametrize('k', CLASS_COUNTS)
@pytest.mark.parametrize('which', ['preds_S', 'preds_T'])
def test_nonfinite_skip_returns_zero_with_zero_grad(k, which):
    s, t, y = _nan_case()
    s.requires_grad_(True)
    with torch.no_grad():
        (s if which == 'preds_S' else t)[0, 0, 0, 0] = float('nan')
    loss_fn = I2CKDLoss(num_classes=k, nonfinite='skip', pull_weight=1.0,
                        pixel_weight=0.5)
    loss = loss_fn(s, t, y)  # 'skip': no error
    assert loss.item() == 0.0 and loss_fn.last_stats['skipped'] == 1
    loss.backward()
    assert (s.grad == 0).all()  # NaN never reaches the parameters
    # the status still says the step was skipped
    assert loss_fn.raise_for_status(loss_fn.compute(s, t, y)[1]) is True
    # the next finite step is computed normally again
    s2, t2 = _feats(seed=3)
    assert loss_fn(s2, t2, y).item() > 0
    assert loss_fn.last_stats['skipped'] == 0


def test_deferred_statuses_merge_without_losing_anything():
    """With ``defer_checks`` the calls do not wait: their statuses merge
    (``torch.maximum``) into ``pending_status``; a bad label in one call
    and NaN in another (and both in a third) are all reported by one
    read, the label error first, naming the NaN too."""
    s, t = _feats()
    good = torch.zeros(2, 4, 4, dtype=torch.long)
    bad = good.clone()
    bad[0, 1, 1] = 7
    nan_s = s.clone()
    nan_s[0, 0, 0, 0] = float('nan')  # labelled pixel (class 0)
    crit = I2CKDLoss(num_classes=3)
    crit.defer_checks = True
    assert crit.take_status() is None
    crit(s, t, good)
    assert tuple(crit.take_status().tolist()) == I2CKDLoss.STATUS_CLEAR
    assert crit.take_status() is None  # taken: cleared
    crit(s, t, bad)
    crit(nan_s, t, good)
    crit(s, t, good)
    status = crit.take_status()
    both = (r'class ids \[7\].*Also: I2CKDLoss: preds_S \(student feature\) '
            'contains NaN')
    with pytest.raises(ValueError, match=both):
        crit.raise_for_status(status)
    # the same in one call, and across calls merged by hand
    _, one = crit.compute(nan_s, t, bad)
    with pytest.raises(ValueError, match=both):
        crit.raise_for_status(one)
    _, a = crit.compute(s, t, bad)
    _, b = crit.compute(s, nan_s, good)
    with pytest.raises(ValueError, match=r'class ids \[7\].*Also: .*preds_T'):
        crit.raise_for_status(torch.maximum(a, b))
    with pytest.raises(TypeError, match='check_interval'):
        I2CKDLoss(num_classes=3, check_interval=3)  # no such option


def test_pending_status_survives_moving_the_loss():
    """The status belongs to the call, not to the module: ``.to()`` (or
    ``copy.deepcopy``) between the call and the read loses nothing."""
    import copy
    s, t = _feats()
    bad = torch.zeros(2, 4, 4, dtype=torch.long)
    bad[1, 0, 0] = -5
    crit = I2CKDLoss(num_classes=3)
    crit.defer_checks = True
    crit(s, t, bad)
    crit.to(torch.float32).to('cpu')
    crit(s, t, torch.zeros_like(bad))  # merges with the earlier one
    copied = copy.deepcopy(crit)
    for loss_fn in (copied, crit):
        with pytest.raises(ValueError, match=r'class ids \[-5\]'):
            loss_fn.raise_for_status(loss_fn.take_status())


def test_bad_label_ids_count_as_ignored_until_reported():
    s, t, labels, k = random_case(4)
    bad = labels.clone()
    bad[labels == IGNORE] = 40  # every ignored pixel: a bad id instead
    bad[tuple((labels == IGNORE).nonzero()[0].tolist())] = -3
    crit = I2CKDLoss(num_classes=k, pull_weight=1.0)
    loss, status = crit.compute(s, t, bad)
    torch.testing.assert_close(loss, crit(s, t, labels))
    # the smallest and the largest bad id are named
    assert status.tolist() == [3, 40, 0, 0]
    with pytest.raises(ValueError, match=r'class ids \[-3, 40\]'):
        crit.raise_for_status(status)


@pytest.mark.parametrize('opts', [dict()] + OPTIONS)
def test_no_host_waits_in_forward_and_backward(opts):
    s, t, labels, k = random_case(0, dtype=torch.float32)
    s.requires_grad_()
    crit = I2CKDLoss(num_classes=k, **opts)

    def step():
        crit.compute(s, t, labels)[0].backward()
        crit.last_stats  # the diagnostics read as the distiller does

    assert op_counts(step)[1] == 0


@pytest.mark.parametrize('opts', [dict(), OPTIONS[7], OPTIONS[11]])
def test_deepcopy_after_a_call_whose_diagnostics_nobody_read(opts):
    """The diagnostics wait, unread, on detached tensors: the loss holds no
    autograd graph between calls, so it can be deep-copied (e.g. by an EMA
    or a checkpoint hook) and the copy reads the same diagnostics."""
    import copy
    s, t, labels, k = random_case(2)
    s.requires_grad_()
    crit = I2CKDLoss(num_classes=k, **opts)
    loss = crit(s, t, labels)
    copied = copy.deepcopy(crit)
    assert copied.last_stats.keys() == crit.last_stats.keys()
    for key, value in crit.last_stats.items():
        assert torch.equal(copied.last_stats[key], value), key
    loss.backward()  # the caller's graph is untouched
    assert torch.isfinite(s.grad).all()


def test_num_classes_may_be_set_later():
    s, t, labels, k = random_case(0)
    crit = I2CKDLoss()  # e.g. the algorithm fills it from the decode head
    assert crit.num_classes is None
    with pytest.raises(ValueError, match=r'num_classes is not set.*'
                       r'set_num_classes\(K\)'):
        crit(s, t, labels)
    with pytest.raises(ValueError, match='num_classes is not set'):
        crit.prototypes(s, t, labels)
    crit.set_num_classes(k)
    assert crit.num_classes == k
    torch.testing.assert_close(crit(s, t, labels),
                               I2CKDLoss(num_classes=k)(s, t, labels))
    crit.num_classes = 4  # the attribute validates the same way
    with pytest.raises(ValueError, match=r'class ids \[4\]'):
        crit(s, t, torch.full_like(labels, 4))


@pytest.mark.parametrize('value,error', [(0, ValueError), (-3, ValueError),
                                         (2.5, TypeError), (True, TypeError),
                                         ('19', TypeError),
                                         (None, TypeError)])
def test_set_num_classes_validates(value, error):
    crit = I2CKDLoss(num_classes=3)
    with pytest.raises(error, match='num_classes'):
        crit.set_num_classes(value)
    with pytest.raises(error, match='num_classes'):
        crit.num_classes = value
    assert crit.num_classes == 3  # unchanged


def test_set_num_classes_accepts_integer_like():
    crit = I2CKDLoss()
    crit.set_num_classes(torch.tensor(7))
    assert crit.num_classes == 7 and type(crit.num_classes) is int


# --------------------------------------------------------- prototypes()
@pytest.mark.parametrize('scope', [None, 'image', 'batch'])
def test_prototypes_method_equals_reference(scope):
    s, t, labels, k = random_case(4)
    gt = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    s_small = s[:, :, ::2, ::2]
    crit = I2CKDLoss(num_classes=k, prototype_scope='image')
    ps, pt, present = crit.prototypes(s_small, t, gt, scope=scope)
    s6 = F.interpolate(s_small, size=(6, 6), mode='bilinear',
                       align_corners=False)
    y6 = ref.resize_labels(gt, (6, 6), k)
    ref_scope = scope or 'image'
    rs, counts = ref.prototypes(s6, y6, k, scope=ref_scope)
    rt, _ = ref.prototypes(t, y6, k, scope=ref_scope)
    assert ps.dtype == pt.dtype == torch.float64
    torch.testing.assert_close(ps, rs)
    torch.testing.assert_close(pt, rt)
    assert torch.equal(present, counts > 0)


def test_prototypes_accumulation_dtype_and_gradient():
    s, t, labels, k = random_case(4, dtype=torch.bfloat16)
    s.requires_grad_(True)
    ps, pt, _ = I2CKDLoss(num_classes=k).prototypes(s, t, labels)
    assert ps.dtype == pt.dtype == torch.float32  # bf16 summed in fp32
    assert ps.requires_grad and not pt.requires_grad


def test_forward_uses_prototypes_method(monkeypatch):
    s, t, labels, k = random_case(5)
    crit = I2CKDLoss(num_classes=k)
    calls = []
    # compute() and prototypes() both take the class means of _prototypes
    real = crit._prototypes

    def spy(*args, **kwargs):
        calls.append(args)
        out = real(*args, **kwargs)
        means = out[0] * torch.tensor([2.0, 1.0], dtype=out[0].dtype).view(
            2, 1, 1, 1)  # a change of the student's means must show
        return (means, ) + out[1:]

    monkeypatch.setattr(crit, '_prototypes', spy)
    loss = crit(s, t, labels)
    assert len(calls) == 1
    close(loss, ref.loss(2 * s, t, labels, k))
    ps = crit.prototypes(s, t, labels)[0]  # the public method: same path
    assert len(calls) == 2
    close(ps, 2 * ref.prototypes(s, labels, k)[0])


def test_prototypes_rejects_unknown_scope():
    s, t, labels, k = random_case(5)
    with pytest.raises(ValueError, match='scope'):
        I2CKDLoss(num_classes=k).prototypes(s, t, labels, scope='rank')


# ---------------------------------------------------- mixed precision (AMP)
# bf16 keeps 8 significand bits: unit roundoff 2^-9, so one rounding of a
# feature changes it by at most 2^-8 relative (with headroom for the conv's
# own bf16 products). Means and Euclidean norms are 1-Lipschitz, so each
# prototype distance d changes by <= 2^-8 * d, and each hinge
# max(0, d_pos - d_neg + m) (1-Lipschitz) by <= 2^-8 (d_pos + d_neg).
BF16_REL = 2.0**-8


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(pull_weight=1.0, normalize=True, margin=0.2),
    dict(pull_weight=1.0, normalize=True, margin=0.2, pixel_weight=1.0),
])
def test_loss_of_low_precision_features_matches_fp32(dtype, kwargs):
    """Features ~3 +- 0.1 (large sums, small spread: where low-precision
    accumulation fails) give the fp32 loss of the same rounded values."""
    g = torch.Generator().manual_seed(0)
    s = (3 + 0.1 * torch.randn(2, 4, 64, 64, generator=g)).to(dtype)
    t = (3 + 0.1 * torch.randn(2, 4, 64, 64, generator=g)).to(dtype)
    y = torch.randint(0, 3, (2, 64, 64), generator=g)
    y[:, :4] = IGNORE
    s.requires_grad_()
    loss_fn = I2CKDLoss(num_classes=3, **kwargs)
    loss = loss_fn(s, t, y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(s.detach().float(), t.float(),
                                             y), rtol=1e-5, atol=1e-6)
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
    expected = loss_fn(conv_s(x), conv_t(x), y)
    stats = loss_fn.last_stats
    bound = 2 * BF16_REL * float(stats['d_pos'] + stats['d_neg'])
    assert abs(loss.item() - expected.item()) <= bound
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv_s.parameters())


def test_i2ckd_distill_step_under_bf16_autocast_is_finite():
    from tiny_models import make_seg_batch, tiny_distill
    torch.manual_seed(0)
    model = tiny_distill()  # ResNetV1c-18 8/16 channels wide, 32x32
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
    expected = loss_fn(conv_s(x), conv_t(x), y)
    stats = loss_fn.last_stats
    # fp16 has 11 significand bits: a tighter bound than bf16's
    bound = 2 * 2.0**-10 * float(stats['d_pos'] + stats['d_neg'])
    assert abs(loss.item() - expected.item()) <= bound


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs a CUDA GPU; none here')
@pytest.mark.parametrize('opts', [{}] + OPTIONS)
def test_loss_on_cuda_equals_float64_reference(opts):
    """Value and student gradient in float32 on CUDA
    against the float64 CPU reference, at 19 classes on a 8x16
    feature map (labels 8x larger, resized as in training), then the
    small hand-made case of the CPU tests. (Small sizes: the reference's
    pixel term loops over pixels.)"""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 32, 8, 16, generator=g, dtype=torch.float64)
    t = torch.randn(2, 32, 8, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 19, (2, 64, 128), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.05] = IGNORE
    for s, t, y, k in ((s, t, y, 19), random_case(1)):
        crit = I2CKDLoss(num_classes=k, **opts)
        sc = s.float().cuda().requires_grad_()
        loss = crit(sc, t.float().cuda(), y.cuda())
        loss.backward()
        s64 = s.clone().requires_grad_()
        expected = ref.loss(s64, t, y, k, **opts)
        expected.backward()
        assert loss.is_cuda and loss.dtype == torch.float32
        close(loss.cpu(), expected)
        torch.testing.assert_close(sc.grad.cpu().double(), s64.grad,
                                   rtol=1e-4, atol=1e-7)


# ------------------------------------------- compile, CUDA graphs, op count
COMPILE_CASES = [dict(), dict(normalize=True, margin=0.2, pull_weight=1.0)]


@pytest.mark.parametrize('scope', ['image', 'batch'])
@pytest.mark.parametrize('opts', COMPILE_CASES)
def test_torch_compile_fullgraph_gives_the_eager_values(scope, opts):
    """``compute`` in one graph (no break: no wait, no branch on a value),
    the eager value, gradient and diagnostics; a bad label id in a compiled
    call is in the status it returns."""
    torch._dynamo.reset()  # each case compiles twice: 8 in all, the limit
    s, t, labels, k = random_case(3)
    s.requires_grad_(True)
    crit = I2CKDLoss(num_classes=k, prototype_scope=scope, **opts)
    eager = crit(s, t, labels)
    (g_eager, ) = torch.autograd.grad(eager, s)
    stats = {key: float(v) for key, v in crit.last_stats.items()}
    compiled = torch.compile(crit.compute, fullgraph=True,
                             backend='aot_eager')
    loss, status = compiled(s, t, labels)
    assert tuple(status.tolist()) == I2CKDLoss.STATUS_CLEAR
    (grad, ) = torch.autograd.grad(loss, s)
    torch.testing.assert_close(loss, eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, g_eager, rtol=1e-12, atol=1e-12)
    assert {key: float(v) for key, v in crit.last_stats.items()} == stats
    with torch.no_grad():  # no input needs a gradient: another trace
        torch.testing.assert_close(compiled(s, t, labels)[0], eager,
                                   rtol=1e-12, atol=1e-12)
    # more calls than dynamo's recompile limit (8): no state of the loss is
    # a guard (fullgraph=True would fail on a recompile past the limit)
    for _ in range(10):
        compiled(s, t, labels)
    bad = labels.clone()
    bad[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r'class ids \[9\]'):
        crit.raise_for_status(compiled(s, t, bad)[1])


def test_torch_compile_of_the_module_with_deferred_checks():
    """With ``defer_checks`` the module itself compiles in one graph: calls
    merge their statuses into ``pending_status`` without a wait, past
    dynamo's recompile limit, and the bad id of one call is kept."""
    s, t, labels, k = random_case(3)
    s.requires_grad_(True)
    crit = I2CKDLoss(num_classes=k)
    crit.defer_checks = True
    compiled = torch.compile(crit, fullgraph=True, backend='aot_eager')
    for i in range(10):
        y = labels.clone()
        if i == 4:
            y[0, 0, 0] = 9
        loss = compiled(s, t, y)
        loss.backward()
    torch.testing.assert_close(loss, crit.compute(s, t, labels)[0])
    with pytest.raises(ValueError, match=r'class ids \[9\]'):
        crit.raise_for_status(crit.take_status())


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs a CUDA GPU; none here')
def test_cuda_graph_captures_forward_and_backward():
    """The whole step of the loss in one CUDA graph: replays give the
    eager value and gradient for new inputs copied into the static ones."""
    s, t, labels, k = random_case(4, n=2, c=16, h=8, w=8, num_classes=19,
                                  dtype=torch.float32)
    s, t, labels = s.cuda().requires_grad_(), t.cuda(), labels.cuda()
    crit = I2CKDLoss(num_classes=k, normalize=True, margin=0.2,
                     pull_weight=1.0)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture
        for _ in range(2):
            s.grad = None
            crit.compute(s, t, labels)[0].backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    s.grad = None
    with torch.cuda.graph(graph):  # compute(): no wait, capturable
        loss, status = crit.compute(s, t, labels)
        loss.backward()
    for seed in (5, 6):
        s2, t2, y2, _ = random_case(seed, n=2, c=16, h=8, w=8,
                                    num_classes=19, dtype=torch.float32)
        with torch.no_grad():
            s.copy_(s2.cuda())
            t.copy_(t2.cuda())
            labels.copy_(y2.cuda())
        graph.replay()
        x = s2.cuda().requires_grad_()
        expected = crit(x, t2.cuda(), y2.cuda())
        expected.backward()
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(s.grad, x.grad)
        assert tuple(status.tolist()) == I2CKDLoss.STATUS_CLEAR
    labels[0, 0, 0] = 40  # a bad id replayed: the captured status says so
    graph.replay()
    with pytest.raises(ValueError, match=r'class ids \[40\]'):
        crit.raise_for_status(status)


@pytest.mark.parametrize('opts,limit', [
    (dict(), 82), (dict(normalize=True, margin=0.2, pull_weight=1.0), 121)])
def test_operation_count_per_forward_backward(opts, limit):
    """Top-level operators of one forward+backward of ``compute``
    (``harness.op_counts``, the benchmarks' counter), a guard against
    growth: MMRazor's CWD issues 27. The count does not grow with K or the
    image size (fixed shapes)."""
    from mmrazor.models.losses import ChannelWiseDivergence
    counts = []
    for k, size in ((19, (16, 32)), (150, (32, 64))):
        s, t, labels, _ = random_case(0, n=2, c=32, h=size[0], w=size[1],
                                      num_classes=k, dtype=torch.float32)
        labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
        s.requires_grad_()
        crit = I2CKDLoss(num_classes=k, **opts)
        crit.compute(s, t, labels)[0].backward()  # warm-up
        counts.append(op_counts(
            lambda: crit.compute(s, t, labels)[0].backward())[0])
    assert counts[0] == counts[1] <= limit, counts
    cwd = ChannelWiseDivergence(tau=1.0)
    assert op_counts(lambda: cwd(s, t).backward())[0] < 30


# ------------------------------------------------ properties (hypothesis)
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


PROPERTY_OPTIONS = st.fixed_dictionaries(
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
@given(batch=batches(), opts=PROPERTY_OPTIONS)
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
    centres = torch.arange(num_classes, dtype=torch.float64)[:, None] * \
        2.0 * margin * direction  # (K, C): class k sits at 2 k margin
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
    assert loss_fn(s, t, y).item() == 0.0
    # Control: a teacher whose prototypes all coincide makes every triplet's
    # hinge exactly the margin, so the zero above is not trivial.
    if loss_fn.last_stats['triplets'] > 0:
        assert loss_fn(s, torch.zeros_like(t), y).item() >= 0.5 * margin


@SETTINGS
@given(batch=batches(), opts=PROPERTY_OPTIONS, perm_seed=st.integers(0, 1000))
def test_invariant_to_permuting_images(batch, opts, perm_seed):
    s, t, y, num_classes, _ = batch
    perm = torch.randperm(s.shape[0],
                          generator=torch.Generator().manual_seed(perm_seed))
    loss_fn = I2CKDLoss(num_classes=num_classes, **opts)
    torch.testing.assert_close(
        loss_fn(s, t, y), loss_fn(s[perm], t[perm], y[perm]),
        rtol=1e-10, atol=1e-12)

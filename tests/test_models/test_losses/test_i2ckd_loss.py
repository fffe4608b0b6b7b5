"""I2CKDLoss against torch.nn.TripletMarginLoss and hand-computed values."""
import pytest
import torch
import torch.nn.functional as F

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from i2ckd_mm.models.losses import I2CKDLoss

IGNORE = 255


# ---------------------------------------------------------------- references
def naive_protos(feats, labels, scope='image'):
    """{(group, class): mean feature (float64)} by boolean masks."""
    f = feats.double().permute(0, 2, 3, 1)  # N, h, w, C
    out = {}
    groups = range(feats.shape[0]) if scope == 'image' else [None]
    for g in groups:
        fg = f if g is None else f[g:g + 1]
        lg = labels if g is None else labels[g:g + 1]
        for k in sorted(set(lg.unique().tolist()) - {IGNORE}):
            out[(g, k)] = fg[lg == k].mean(0)
    return out


def naive_triplets(ps, pt):
    """Every (anchor P^s_gk, positive P^t_gk, negative P^t_gj), j != k."""
    anc, pos, neg = [], [], []
    for (g, k), a in ps.items():
        for (g2, j), n in pt.items():
            if g2 == g and j != k:
                anc.append(a)
                pos.append(pt[(g, k)])
                neg.append(n)
    return torch.stack(anc), torch.stack(pos), torch.stack(neg)


def cosine_distance(a, b):
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def reference_loss(s, t, labels, margin=1.0, scope='image', normalize=False,
                   distance='euclidean', negatives='all', symmetric=False,
                   pull_weight=0.0, pull_type='squared'):
    """Independent I2CKD reference built on torch.nn triplet losses."""
    ps, pt = naive_protos(s, labels, scope), naive_protos(t, labels, scope)
    if normalize:
        ps = {k: F.normalize(v, dim=0) for k, v in ps.items()}
        pt = {k: F.normalize(v, dim=0) for k, v in pt.items()}
    if distance == 'euclidean':
        crit = torch.nn.TripletMarginLoss(margin=margin, p=2)
        dist = F.pairwise_distance  # the same eps convention
    else:
        crit = torch.nn.TripletMarginWithDistanceLoss(
            distance_function=cosine_distance, margin=margin)
        dist = cosine_distance

    def term(anchor_p, other_p):
        if negatives == 'all':
            return crit(*naive_triplets(anchor_p, other_p))
        anc, pos, neg = [], [], []  # hardest: closest other-class prototype
        for (g, k), a in anchor_p.items():
            cands = [v for (g2, j), v in other_p.items() if g2 == g and j != k]
            if not cands:
                continue
            d = torch.stack([dist(a[None], c[None])[0] for c in cands])
            anc.append(a)
            pos.append(other_p[(g, k)])
            neg.append(cands[int(d.argmin())])
        return crit(torch.stack(anc), torch.stack(pos), torch.stack(neg))

    loss = term(ps, pt)
    if symmetric:
        loss = 0.5 * (loss + term(pt, ps))
    if pull_weight:
        d = torch.stack([dist(ps[key][None], pt[key][None])[0] for key in ps])
        loss = loss + pull_weight * (d if pull_type == 'linear' else d**2).mean()
    return loss


def random_case(seed, n=2, c=3, h=6, w=6, num_classes=5):
    """Ignore pixels, an absent class, and a different class set per image.

    Image 0 holds classes {0, 1, 2} (6 triplets), image 1 holds {0, 3}
    (2 triplets); class 4 is absent everywhere.
    """
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, h, w, generator=g)
    t = torch.randn(n, c, h, w, generator=g)
    labels = torch.empty(n, h, w, dtype=torch.long)
    labels[0] = torch.randint(0, 3, (h, w), generator=g)
    labels[1] = torch.tensor([0, 3])[torch.randint(0, 2, (h, w), generator=g)]
    labels[torch.rand(n, h, w, generator=g) < 0.25] = IGNORE
    for img, classes in ((0, [0, 1, 2]), (1, [0, 3])):  # keep them present
        for i, k in enumerate(classes):
            labels[img, i, 0] = k
    return s, t, labels, num_classes


# ----------------------------------------------------- default = literal loss
@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('margin', [1.0, 3.0])
def test_default_equals_triplet_margin_loss(seed, margin):
    s, t, labels, k = random_case(seed)
    loss = I2CKDLoss(num_classes=k, margin=margin)(s, t, labels)
    ref = reference_loss(s, t, labels, margin=margin)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)
    assert ref > 0


def test_one_global_mean_over_all_triplets():
    s, t, labels, k = random_case(0)
    loss = I2CKDLoss(num_classes=k, margin=3.0)(s, t, labels)
    per_image = [
        reference_loss(s[i:i + 1], t[i:i + 1], labels[i:i + 1], margin=3.0)
        for i in range(2)
    ]
    # 6 + 2 triplets: weighted 6/8 and 2/8, not the mean of image means
    global_mean = (6 * per_image[0] + 2 * per_image[1]) / 8
    torch.testing.assert_close(loss.double(), global_mean, rtol=1e-5,
                               atol=1e-6)
    assert abs(float(loss) - float(sum(per_image) / 2)) > 1e-3


def test_batch_scope_equals_reference():
    s, t, labels, k = random_case(5)
    loss = I2CKDLoss(num_classes=k, prototype_scope='batch')(s, t, labels)
    ref = reference_loss(s, t, labels, scope='batch')
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)


def test_labels_and_student_resized_to_teacher_size():
    # gt 12x12 -> teacher size 6x6 by nearest (= every other pixel);
    # student 3x3 -> 6x6 bilinear (align_corners=False).
    s, t, labels, k = random_case(6)
    gt = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    gt[:, 1::2] = 4  # pixels nearest never samples: must not matter
    s_small = s[:, :, ::2, ::2].contiguous()
    loss = I2CKDLoss(num_classes=k)(s_small, t, gt)
    s_up = F.interpolate(s_small, size=(6, 6), mode='bilinear',
                         align_corners=False)
    ref = reference_loss(s_up, t, gt[:, ::2, ::2])
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)


def test_label_resize_mode_is_used():
    from i2ckd_mm.models.losses.prototypes import resize_labels
    s, t, labels, k = random_case(8)
    gt = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    gt[:, ::2, ::2] = IGNORE  # nearest would see only ignore
    loss = I2CKDLoss(num_classes=k, label_resize='mode')(s, t, gt)
    ref = reference_loss(s, t, resize_labels(gt, (6, 6), k, IGNORE, 'mode'))
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)
    assert float(I2CKDLoss(num_classes=k)(s, t, gt)) == 0.0


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
    st = crit.last_stats
    assert float(st['active']) == pytest.approx(0.5)  # 1 of 2 triplets
    assert float(st['d_pos']) == pytest.approx((1 + 2) / 2, abs=1e-5)
    assert float(st['d_neg']) == pytest.approx((4 + 1) / 2, abs=1e-5)
    assert float(st['triplets']) == 2
    assert float(st['pull']) == 0
    assert all(not v.requires_grad for v in st.values())


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
    dict(normalize=True, negatives='hardest', symmetric=True, margin=0.2,
         pull_weight=1.0),
    dict(distance='cosine', negatives='hardest', symmetric=True, margin=0.5),
    dict(prototype_scope='batch', negatives='hardest', pull_weight=0.3),
]


@pytest.mark.parametrize('opts', OPTIONS)
@pytest.mark.parametrize('seed', [0, 1])
def test_options_equal_reference(opts, seed):
    s, t, labels, k = random_case(seed)
    opts = dict(opts)  # the parametrised dict is shared between cases
    margin = opts.pop('margin', 1.0)
    scope = opts.pop('prototype_scope', 'image')
    loss = I2CKDLoss(num_classes=k, margin=margin, prototype_scope=scope,
                     **opts)(s, t, labels)
    ref = reference_loss(s, t, labels, margin=margin, scope=scope, **opts)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)
    # the option changes the value (the reference can tell them apart)
    plain = reference_loss(s, t, labels, margin=margin, scope=scope)
    assert abs(float(ref) - float(plain)) > 1e-4
    assert float(ref) > 0


@pytest.mark.parametrize('opts', [dict()] + OPTIONS)
def test_gradcheck_float64(opts):
    s, t, labels, k = random_case(7, h=4, w=4)
    s = s.double().requires_grad_(True)
    crit = I2CKDLoss(num_classes=k, **{'margin': 1.5, **opts})
    assert torch.autograd.gradcheck(lambda x: crit(x, t.double(), labels),
                                    (s, ), eps=1e-6, atol=1e-5)
    assert crit(s, t.double(), labels).dtype == torch.float64


def test_teacher_gets_no_gradient():
    s, t, labels, k = random_case(0)
    s.requires_grad_(True)
    t.requires_grad_(True)
    I2CKDLoss(num_classes=k, symmetric=True)(s, t, labels).backward()
    assert t.grad is None
    assert s.grad.abs().sum() > 0


# ------------------------------------------------------------- edge cases
@pytest.mark.parametrize('opts', [dict()] + OPTIONS[:4])
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


def test_single_class_with_pull_gives_only_the_pull():
    s, t, labels, k = random_case(1)
    labels = torch.where(labels == IGNORE, labels, 1)
    loss = I2CKDLoss(num_classes=k, pull_weight=2.0)(s, t, labels)
    f_s = s.permute(0, 2, 3, 1)
    f_t = t.permute(0, 2, 3, 1)
    d2 = [
        F.pairwise_distance(f_s[i][labels[i] == 1].mean(0, keepdim=True),
                            f_t[i][labels[i] == 1].mean(0, keepdim=True))**2
        for i in range(2)
    ]
    assert float(loss) == pytest.approx(2.0 * float(sum(d2)) / 2, rel=1e-5)


def test_image_with_one_class_adds_no_triplet():
    s, t, labels, k = random_case(2)
    labels[1] = torch.where(labels[1] == IGNORE, labels[1], 3)  # only class 3
    crit = I2CKDLoss(num_classes=k)
    loss = crit(s, t, labels)
    only_first = I2CKDLoss(num_classes=k)(s[:1], t[:1], labels[:1])
    torch.testing.assert_close(loss, only_first)
    assert float(crit.last_stats['triplets']) == 6


def test_loss_weight_scales_value_and_gradient():
    s, t, labels, k = random_case(3)
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    l1 = I2CKDLoss(num_classes=k)(s1, t, labels)
    l2 = I2CKDLoss(num_classes=k, loss_weight=2.5)(s2, t, labels)
    (l1 + l2).backward()
    torch.testing.assert_close(l2, 2.5 * l1)
    torch.testing.assert_close(s2.grad, 2.5 * s1.grad)


def test_stats_random_case_against_reference():
    s, t, labels, k = random_case(4)
    crit = I2CKDLoss(num_classes=k, margin=3.0)
    crit(s, t, labels)
    anc, pos, neg = naive_triplets(
        naive_protos(s, labels), naive_protos(t, labels))
    d_pos = F.pairwise_distance(anc, pos)
    d_neg = F.pairwise_distance(anc, neg)
    ps, pt = naive_protos(s, labels), naive_protos(t, labels)
    d_pos_classes = torch.stack(
        [F.pairwise_distance(ps[q][None], pt[q][None])[0] for q in ps])
    st = crit.last_stats
    assert float(st['triplets']) == 8
    assert float(st['active']) == pytest.approx(
        float((d_pos - d_neg + 3.0 > 0).double().mean()))
    assert float(st['d_neg']) == pytest.approx(float(d_neg.mean()), rel=1e-5)
    assert float(st['d_pos']) == pytest.approx(
        float(d_pos_classes.mean()), rel=1e-5)


@pytest.mark.parametrize('name,value', [
    ('prototype_scope', 'pixel'),
    ('label_resize', 'bilinear'),
    ('distance', 'manhattan'),
    ('negatives', 'semi-hard'),
    ('pull_type', 'cubic'),
    ('nonfinite', 'ignore'),
])
def test_constructor_rejects_unknown_option(name, value):
    with pytest.raises(ValueError, match=rf'{name}.*{value!r}'):
        I2CKDLoss(num_classes=3, **{name: value})


@pytest.mark.parametrize('kwargs', [
    dict(num_classes=0), dict(num_classes=3, margin=-1.0),
    dict(num_classes=3, pull_weight=-0.1)
])
def test_constructor_rejects_bad_numbers(kwargs):
    with pytest.raises(ValueError):
        I2CKDLoss(**kwargs)

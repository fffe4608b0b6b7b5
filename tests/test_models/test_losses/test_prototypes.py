"""Class prototypes, label resizing and label checks
(i2ckd_mm/models/losses/prototypes.py and inputs.py) against hand-computed
values and the loop reference ``tools/toy/reference_i2ckd.py``."""
import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import pytest
import torch

from toy import reference_i2ckd as ref
from i2ckd_mm.models.losses.inputs import label_bins, resize_labels
from i2ckd_mm.models.losses.prototypes import class_means, class_prototypes

IGNORE = 255


def random_case(seed, n=3, c=4, h=5, w=6, num_classes=6):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, h, w, generator=g)
    # classes 0..3 only: 4 and 5 are absent everywhere
    labels = torch.randint(0, 4, (n, h, w), generator=g)
    labels[torch.rand(n, h, w, generator=g) < 0.3] = IGNORE
    labels[1][labels[1] == 2] = IGNORE  # class 2 absent from image 1 only
    return feats, labels, num_classes


@pytest.mark.parametrize('scope', ['image', 'batch', 'global'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_prototypes_match_reference(scope, seed):
    feats, labels, k = random_case(seed)
    protos, counts = class_prototypes(feats, labels, k, IGNORE, scope)
    ref_p, ref_c = ref.prototypes(feats.double(), labels, k, IGNORE, scope)
    groups = feats.shape[0] if scope == 'image' else 1
    assert protos.shape == (groups, k, feats.shape[1])
    assert protos.dtype == torch.float32
    torch.testing.assert_close(counts.double(), ref_c.double())
    torch.testing.assert_close(protos.double(), ref_p, atol=1e-6, rtol=1e-5)
    # absent classes: count 0 and a zero prototype (not NaN)
    assert (counts[:, 4:] == 0).all() and (protos[:, 4:] == 0).all()
    if scope == 'image':
        assert counts[1, 2] == 0 and (protos[1, 2] == 0).all()
        assert counts[0, 2] > 0


def test_batch_prototype_is_pixel_weighted_not_image_mean():
    # image 0: class 0 on 3 pixels of value 1; image 1: 1 pixel of value 5.
    feats = torch.zeros(2, 1, 1, 3)
    feats[0, 0, 0] = 1.0
    feats[1, 0, 0, 0] = 5.0
    labels = torch.full((2, 1, 3), IGNORE)
    labels[0] = 0
    labels[1, 0, 0] = 0
    protos, counts = class_prototypes(feats, labels, 1, IGNORE, 'batch')
    assert counts.tolist() == [[4.0]]
    assert protos.item() == pytest.approx((3 * 1 + 5) / 4)  # not (1+5)/2


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_fp32(dtype):
    # 4096 pixels of one class: fp16/bf16 sums would lose the small parts.
    g = torch.Generator().manual_seed(3)
    feats = (100 + torch.rand(2, 3, 64, 64, generator=g)).to(dtype)
    labels = torch.randint(0, 2, (2, 64, 64), generator=g)
    protos, _ = class_prototypes(feats, labels, 2, IGNORE, 'batch')
    assert protos.dtype == torch.float32
    # independent fp64 reference: boolean-mask mean per class
    f64 = feats.double().permute(0, 2, 3, 1)  # N, h, w, C
    ref = torch.stack([f64[labels == k].mean(0) for k in range(2)])[None]
    # same (rounded) inputs summed in fp32 vs fp64: agree to fp32 precision
    torch.testing.assert_close(protos.double(), ref, atol=1e-4, rtol=1e-6)
    # (summing in fp16 itself would overflow: 2048 * 100 > 65504; bf16
    # keeps 8 mantissa bits: errors of whole units.)
    assert float(feats.double().sum(dim=(2, 3)).max()) > 65504


def test_float64_stays_float64():
    feats, labels, k = random_case(4)
    protos, _ = class_prototypes(feats.double(), labels, k, IGNORE)
    assert protos.dtype == torch.float64


def test_prototypes_gradient_is_mean_weight():
    # d P_k / d F_p = 1 / count_k for pixels of class k, else 0.
    feats = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[[0, 0, 1], [IGNORE, 0, 1]]])
    protos, _ = class_prototypes(feats, labels, 2, IGNORE, 'image')
    protos[0, 0, 1].backward()
    expected = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    expected[0, 1][labels[0] == 0] = 1 / 3
    torch.testing.assert_close(feats.grad, expected)


def test_class_means_of_two_maps_and_their_gradient():
    """The one prototype path (autograd of scatter_add, stack and slice):
    the means equal a per-class loop, with bin K (ignored pixels) present,
    and gradcheck passes in float64 for two maps that both need a gradient
    and for one map alone."""
    g = torch.Generator().manual_seed(0)
    k = 3
    bins = torch.randint(0, k + 1, (2, 7), generator=g)  # K = ignored
    a, b = (torch.randn(2, 4, 7, dtype=torch.float64, generator=g)
            for _ in range(2))
    for scope in ('image', 'batch'):
        means, counts = class_means([a, b], bins, k, scope)
        assert means.shape == ((2, 2, 4, k) if scope == 'image'
                               else (2, 1, 4, k))
        for i, f in enumerate((a, b)):
            for c in range(k):
                if scope == 'image':
                    for n in range(2):
                        pix = f[n][:, bins[n] == c]
                        assert counts[n, c] == pix.shape[1]
                        torch.testing.assert_close(
                            means[i, n, :, c],
                            pix.mean(1) if pix.shape[1] else pix.sum(1))
                else:
                    pix = torch.cat([f[n][:, bins[n] == c] for n in range(2)],
                                    1)
                    torch.testing.assert_close(means[i, 0, :, c], pix.mean(1))
    a.requires_grad_()
    b.requires_grad_()
    torch.autograd.gradcheck(
        lambda x, y: class_means([x, y], bins, k, 'image')[0], (a, b))
    torch.autograd.gradcheck(
        lambda x: class_means([x], bins, k, 'batch')[0], (a, ))
    grad_a, = torch.autograd.grad(
        class_means([a, b.detach()], bins, k, 'image')[0].sum(), a)
    # a labelled pixel's gradient is 1 / its class's count; ignored: 0
    _, counts = class_means([a.detach()], bins, k, 'image')
    expected = torch.where(bins < k, 1 / counts.gather(
        1, bins.clamp(max=k - 1)), 0.0)
    torch.testing.assert_close(grad_a, expected.unsqueeze(1).expand_as(a))


def test_prototypes_bad_args():
    feats, labels, k = random_case(0)
    with pytest.raises(ValueError, match='scope'):
        class_prototypes(feats, labels, k, IGNORE, 'pixel')
    with pytest.raises(ValueError, match='N x h x w'):
        class_prototypes(feats, labels[:, :-1], k, IGNORE)
    with pytest.raises(ValueError, match='expected feats'):
        class_prototypes(feats[0], labels, k, IGNORE)


@pytest.mark.parametrize('mode', ['nearest', 'mode'])
@pytest.mark.parametrize('src,dst', [((7, 5), (3, 2)), ((3, 4), (7, 9)),
                                     ((8, 8), (4, 4)), ((9, 12), (4, 5))])
def test_resize_labels_matches_reference(src, dst, mode):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, ) + src, generator=g)
    labels[0, 0, 0] = IGNORE
    labels[1, :, :2] = IGNORE
    out = resize_labels(labels, dst, 5, IGNORE, mode)
    assert out.dtype == torch.int64
    assert torch.equal(out, ref.resize_labels(labels, dst, 5, IGNORE, mode))


@pytest.mark.parametrize('src,dst', [((16, 16), (8, 8)), ((17, 23), (5, 7)),
                                     ((5, 6), (11, 13)), ((64, 64), (8, 8))])
def test_resize_labels_mode_equals_one_hot_pooling(src, dst):
    """The vote count per cell gives what a full-resolution one-hot
    averaged by adaptive_avg_pool2d gives (the former implementation),
    ties included: 3 classes on 2x2 windows tie often; bad ids and the
    ignore index vote for no class."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (3, ) + src, generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = IGNORE
    labels[0, 0, :3] = 7  # bad ids
    onehot = (labels.unsqueeze(1) == torch.arange(3).view(1, -1, 1, 1))
    votes = torch.nn.functional.adaptive_avg_pool2d(onehot.float(), dst)
    best_votes, best = votes.max(dim=1)
    expected = torch.where(best_votes > 0, best, IGNORE)
    assert torch.equal(resize_labels(labels, dst, 3, IGNORE, 'mode'),
                       expected)
    if src == (16, 16):  # 2x2 windows: ties must have occurred
        top2 = votes.topk(2, dim=1).values
        assert ((top2[:, 0] == top2[:, 1]) & (top2[:, 0] > 0)).any()


def test_resize_labels_nearest_keeps_large_ids_exact():
    labels = torch.full((1, 4, 4), 2**24 + 1, dtype=torch.long)  # > fp32 exact
    out = resize_labels(labels, (2, 2), 2**25, IGNORE, 'nearest')
    assert (out == 2**24 + 1).all()


def test_resize_labels_same_size_is_identity():
    labels = torch.randint(0, 3, (1, 4, 5), dtype=torch.int32)
    out = resize_labels(labels, (4, 5), 3, IGNORE)
    assert out.dtype == torch.int64 and torch.equal(out, labels.long())


def test_resize_labels_mode_hand_case():
    # 4x4 -> 2x2: each output pixel covers one 2x2 block.
    labels = torch.tensor([[[1, 1, 2, 2],
                            [1, 0, 2, IGNORE],
                            [IGNORE, IGNORE, 0, 1],
                            [IGNORE, 3, 1, 0]]])
    out = resize_labels(labels, (2, 2), 4, IGNORE, 'mode')
    # block TL {1,1,1,0} -> 1; TR {2,2,2,ign} -> 2 (ignore never votes);
    # BL {ign,ign,ign,3} -> 3 (one valid vote beats three ignores);
    # BR {0,1,1,0} tie 0 vs 1 -> smallest id 0.
    assert out.tolist() == [[[1, 2], [3, 0]]]
    # nearest picks the top-left pixel of each block instead
    near = resize_labels(labels, (2, 2), 4, IGNORE, 'nearest')
    assert near.tolist() == [[[1, 2], [IGNORE, 0]]]


def test_resize_labels_mode_all_ignore_block_stays_ignored():
    labels = torch.tensor([[[IGNORE, IGNORE, 1, 1], [IGNORE, IGNORE, 1, 0]]])
    out = resize_labels(labels, (1, 2), 2, IGNORE, 'mode')
    assert out.tolist() == [[[IGNORE, 1]]]


def test_resize_labels_rejects_unknown_mode():
    with pytest.raises(ValueError, match='bilinear'):
        resize_labels(torch.zeros(1, 4, 4, dtype=torch.long), (2, 2), 2,
                      IGNORE, 'bilinear')


def test_label_bins_accepts_valid_and_ignore():
    bins, bad = label_bins(torch.tensor([[0, 3, IGNORE]]), 4, IGNORE)
    assert bins.tolist() == [[0, 3, 4]] and bad.tolist() == [0, 0]


@pytest.mark.parametrize('labels,expected', [
    ([0, 1, 4, IGNORE], [0, 4]), ([0, 1, -1, IGNORE], [1, 0]),
    ([0, 254, -7, 9, -2], [7, 254]),
    # no good pixel at all: the extremes stay on their side of 0
    ([40, 19], [0, 40]), ([-5, -1], [5, 0])])
def test_label_bins_names_the_extreme_bad_ids(labels, expected):
    """Minus the smallest negative bad id and the largest bad id >= K (0
    when there is none): a bad id counts as ignored (bin K)."""
    labels = torch.tensor([labels])
    bins, bad = label_bins(labels, 4, IGNORE)
    assert bad.tolist() == expected
    good = (labels >= 0) & (labels < 4)
    assert torch.equal(bins, torch.where(good, labels, 4))
    # merging with torch.maximum keeps both sides of two statuses
    _, other = label_bins(torch.tensor([[-3, 0]]), 4, IGNORE)
    merged = torch.maximum(bad, other).tolist()
    assert merged == [max(expected[0], 3), expected[1]]


def test_label_bins_of_no_pixel_and_of_other_integer_dtypes():
    bins, bad = label_bins(torch.zeros(0, 3, dtype=torch.long), 4, IGNORE)
    assert bins.shape == (0, 3) and bad.tolist() == [0, 0]
    bins, bad = label_bins(torch.tensor([[1, 200]], dtype=torch.uint8), 4,
                           IGNORE)
    assert bins.dtype == torch.int64 and bins.tolist() == [[1, 4]]
    assert bad.tolist() == [0, 200]


@pytest.mark.parametrize('scope', ['image', 'batch'])
def test_two_maps_equal_reference(scope):
    """Student and teacher maps share the labels in one class_means call."""
    feats, labels, k = random_case(5)
    other = torch.randn(feats.shape)
    bins, _ = label_bins(labels.flatten(1), k, IGNORE)
    means, counts = class_means([feats.flatten(2), other.flatten(2)], bins,
                                k, scope)
    r1, c1 = ref.prototypes(feats.double(), labels, k, IGNORE, scope)
    r2, _ = ref.prototypes(other.double(), labels, k, IGNORE, scope)
    torch.testing.assert_close(counts.double(), c1.double())
    for m, r in zip(means, (r1, r2)):
        torch.testing.assert_close(m.transpose(1, 2).double(), r, atol=1e-6,
                                   rtol=1e-5)


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nonfinite_feature_at_ignored_pixel_reaches_no_prototype(value):
    """An ignored pixel's feature, even NaN/Inf, changes nothing, value
    or gradient (it goes to the dropped bin K)."""
    feats, labels, k = random_case(6)
    feats = feats.double()
    i, y, x = (labels == IGNORE).nonzero()[0].tolist()
    bad = feats.clone()
    bad[i, 1, y, x] = value
    bad.requires_grad_(True)
    protos, counts = class_prototypes(bad, labels, k, IGNORE, 'image')
    clean, _ = ref.prototypes(feats, labels, k, IGNORE)
    torch.testing.assert_close(protos, clean)
    protos.sum().backward()
    assert torch.isfinite(bad.grad).all() and (bad.grad[i, :, y, x] == 0).all()


def test_nonfinite_feature_at_labelled_pixel_shows():
    feats, labels, k = random_case(6)
    i, y, x = (labels == 1).nonzero()[0].tolist()
    feats[i, 0, y, x] = float('nan')
    protos, _ = class_prototypes(feats, labels, k, IGNORE, 'image')
    assert torch.isnan(protos[i, 1, 0])  # its class's prototype at least


def test_ignore_index_inside_class_range_is_ignored():
    # ignore_index 2 with 4 classes: label 2 is ignored
    feats, labels, k = random_case(7)
    labels = torch.where(labels == IGNORE, 2, labels)
    protos, counts = class_prototypes(feats, labels, 4, 2, 'image')
    assert (counts[:, 2] == 0).all() and (protos[:, 2] == 0).all()
    r, _ = ref.prototypes(feats.double(), labels, 4, 2)
    torch.testing.assert_close(protos.double(), r, atol=1e-6, rtol=1e-5)

"""The loss's inputs: host-side checks, features and labels at the teacher
feature's size, class bins and bad label ids.

Nothing here waits for the device: bad label ids come back as a small device
tensor (:func:`label_bins`) that the caller reads when it chooses to.
"""
import operator
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

LABEL_RESIZE_MODES = ('nearest', 'mode')
PROTOTYPE_SCOPES = ('image', 'batch', 'global')
#: I2CKDLoss's options that take one of a few values
CHOICES = dict(prototype_scope=PROTOTYPE_SCOPES,
               label_resize=LABEL_RESIZE_MODES,
               distance=('euclidean', 'cosine'), negatives=('all', 'hardest'),
               pull_type=('squared', 'linear'),
               pixel_prototypes=('own', 'teacher'),
               nonfinite=('raise', 'skip'))


def check_options(options: dict) -> None:
    """I2CKDLoss's constructor arguments: each of ``CHOICES`` one of its
    values, the margin and weights >= 0, ``pixel_tau`` > 0."""
    for name, allowed in CHOICES.items():
        if options[name] not in allowed:
            raise ValueError(f'I2CKDLoss: {name} must be one of '
                             f'{allowed}, got {options[name]!r}')
    weights = [options[k] for k in ('margin', 'pull_weight', 'pixel_weight')]
    if min(weights) < 0:
        raise ValueError('margin, pull_weight and pixel_weight must be '
                         f'>= 0, got {", ".join(map(str, weights))}')
    if not options['pixel_tau'] > 0:
        raise ValueError(f'pixel_tau must be > 0, got {options["pixel_tau"]}')


def as_num_classes(num_classes) -> int:
    """K as an int; a bool or non-integer is a TypeError, K < 1 a
    ValueError."""
    try:
        if isinstance(num_classes, bool):
            raise TypeError
        k = operator.index(num_classes)
    except TypeError:
        raise TypeError('I2CKDLoss: num_classes must be an integer, got '
                        f'{num_classes!r}') from None
    if k < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    return k


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sums are taken in at least float32; float64 stays float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_inputs(preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                 num_classes: Optional[int]) -> None:
    """The loss's checks of shapes, dtypes and K: host values only."""
    if num_classes is None:
        raise ValueError(
            'I2CKDLoss: num_classes is not set. Pass num_classes=K in the '
            "loss config, or call loss.set_num_classes(K) (the student's "
            'decode_head.num_classes) before the first forward')
    if preds_S.dim() != 4 or preds_T.dim() != 4:
        raise ValueError(
            'I2CKDLoss expects features N x C x h x w, got preds_S '
            f'{tuple(preds_S.shape)} and preds_T {tuple(preds_T.shape)}')
    if gt.dim() == 4 and gt.shape[1] == 1:
        raise ValueError('I2CKDLoss expects gt N x H x W; squeeze the '
                         f'channel dim of {tuple(gt.shape)}')
    if gt.dim() != 3:
        raise ValueError(
            f'I2CKDLoss expects gt N x H x W, got {tuple(gt.shape)}')
    (n_s, c_s), (n_t, c_t) = preds_S.shape[:2], preds_T.shape[:2]
    if c_s != c_t:
        raise ValueError(
            f'I2CKDLoss: student feature has {c_s} channels but teacher '
            f'feature has {c_t}; add a connector (e.g. I2CKDConnector('
            f'in_channels={c_s}, out_channels={c_t})) to the student input')
    if not n_s == n_t == gt.shape[0]:
        raise ValueError(f'I2CKDLoss: batch sizes differ: preds_S {n_s}, '
                         f'preds_T {n_t}, gt {gt.shape[0]}')
    (h, w), (lh, lw) = preds_T.shape[-2:], gt.shape[-2:]
    if min(h, w, lh, lw) < 1:
        raise ValueError('I2CKDLoss: empty spatial size: preds_T '
                         f'{tuple(preds_T.shape)}, gt {tuple(gt.shape)}')
    if abs(lh / h - lw / w) > 0.1 * max(lh / h, lw / w):
        raise ValueError(
            f'I2CKDLoss: label size {lh}x{lw} does not match the feature '
            f'size {h}x{w} (scale {lh / h:.2f} vs {lw / w:.2f}): labels and '
            'features must cover the same image')
    if gt.dtype.is_floating_point or gt.dtype == torch.bool:
        raise TypeError('I2CKDLoss: gt must be an integer tensor, got '
                        f'dtype {gt.dtype}')


def prepare_inputs(preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                   num_classes: Optional[int], ignore_index: int,
                   label_resize: str):
    """Checked loss inputs at the teacher feature's size (h', w').

    Returns:
        tuple: student and teacher features (N, C, h'w') in
        :func:`accum_dtype` (the student's bilinearly resized, the
        teacher's detached), class bins (N, h'w') of the labels resized by
        ``label_resize`` and the bad ids (2,) (:func:`label_bins`) of the
        pixels read: the resized labels for ``'nearest'``, every pixel for
        ``'mode'`` (where every pixel votes).
    """
    check_inputs(preds_S, preds_T, gt, num_classes)
    dtype, size = accum_dtype(preds_S.dtype), preds_T.shape[-2:]
    s = preds_S if preds_S.dtype == dtype else preds_S.to(dtype)
    t = preds_T.detach() if preds_T.requires_grad else preds_T
    t = t if t.dtype == dtype else t.to(dtype)
    if s.shape[-2:] != size:
        s = F.interpolate(s, size=size, mode='bilinear', align_corners=False)
    if label_resize == 'nearest':
        gt = resize_labels(gt, size, num_classes)
    bins, bad = label_bins(gt, num_classes, ignore_index)
    if label_resize == 'mode':
        bins = vote_bins(bins, size, num_classes)
    return s.flatten(2), t.flatten(2), bins.flatten(1), bad


def bad_label_message(ids: Sequence[int], num_classes: int,
                      ignore_index: int) -> str:
    """The one error text for label ids outside ``[0, K)`` + ignore."""
    return (f'labels contain class ids {list(ids)} that are neither in '
            f'[0, {num_classes}) nor the ignore index {ignore_index}; check '
            "num_classes and the dataset's label mapping "
            '(reduce_zero_label?)')


def label_bins(labels: Tensor, num_classes: int,
               ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Class bins of integer labels (any shape) and their bad ids, no wait.

    Returns:
        tuple[Tensor, Tensor]: ``bins`` (int64, same shape): a labelled
        pixel's class, K for ignored pixels and bad ids (so that a bad id
        never indexes out of range); ``bad`` (2,) int64: minus the smallest
        negative bad id and the largest bad id >= K, each 0 if there is none
        (0 is never a bad id), so ``torch.maximum`` merges two of them.
    """
    labels = labels if labels.dtype == torch.long else labels.long()
    good = labels.clamp(0, num_classes - 1) == labels  # in [0, K)
    if 0 <= ignore_index < num_classes:  # an ignore id in range: no class
        bins = torch.where(good & (labels != ignore_index), labels,
                           num_classes)
    else:
        bins = torch.where(good, labels, num_classes)
    if labels.numel() == 0:  # aminmax has no identity (a shape, no wait)
        return bins, labels.new_zeros(2)
    lo, hi = torch.aminmax(
        torch.where(good | (labels == ignore_index), 0, labels))
    return bins, torch.stack([-lo, hi]).clamp(min=0)


def _windows(src: int, dst: int, device) -> Tensor:
    """Source indices (dst, k) of ``adaptive_avg_pool2d``'s windows along
    one axis, ``[floor(i src / dst), ceil((i + 1) src / dst))``, padded to
    the widest window with ``src`` (the index of a pad pixel)."""
    k = max(-(-(i + 1) * src // dst) - i * src // dst for i in range(dst))
    i = torch.arange(dst, device=device).unsqueeze(1)
    idx = i * src // dst + torch.arange(k, device=device)
    return torch.where(idx < -(-(i + 1) * src // dst), idx, src)


def vote_bins(bins: Tensor, size: Tuple[int, int],
              num_classes: int) -> Tensor:
    """Class bins (N, H, W) in [0, K] resized to (N, h, w) by majority:
    each cell takes the most frequent class of the pixels in its
    ``adaptive_avg_pool2d`` window, the smallest id on a tie, K if none.
    Votes are counted per cell (N, h, w, K + 1), never in a full-resolution
    one-hot."""
    n, (h, w) = bins.shape[0], size
    if tuple(bins.shape[1:]) == (h, w):
        return bins
    rows, cols = (_windows(a, b, bins.device)
                  for a, b in zip(bins.shape[1:], size))
    # pad pixels (index H or W) hold bin K: they vote for no class
    padded = F.pad(bins, (0, 1, 0, 1), value=num_classes)
    cells = padded[:, rows[:, None, :, None],
                   cols[None, :, None, :]].flatten(3)  # (N, h, w, window)
    one = torch.ones((), dtype=torch.int32, device=bins.device)
    votes = one.new_zeros(n, h, w, num_classes + 1).scatter_add_(
        3, cells, one.expand(cells.shape))
    count, best = votes[..., :num_classes].max(dim=3)  # first max on ties
    return torch.where(count > 0, best, num_classes)


def resize_labels(labels: Tensor, size: Tuple[int, int], num_classes: int,
                  ignore_index: int = 255, mode: str = 'nearest') -> Tensor:
    """Resize integer labels (N, H, W) to the feature size (N, h, w), int64.

    ``'nearest'`` (default) reads input pixel ``(floor(i H / h), floor(j W /
    w))`` like ``F.interpolate`` (exact for any id, a strided view for an
    integer scale); ``'mode'``: :func:`vote_bins` (ignored pixels and bad
    ids vote for no class; a cell without a vote is ``ignore_index``).
    """
    if mode not in LABEL_RESIZE_MODES:
        raise ValueError(f'label resize mode must be one of '
                         f'{LABEL_RESIZE_MODES}, got {mode!r}')
    (big_h, big_w), (h, w) = labels.shape[-2:], size
    if (big_h, big_w) != (h, w) and mode == 'mode':
        bins = vote_bins(label_bins(labels, num_classes, ignore_index)[0],
                         size, num_classes)
        return torch.where(bins < num_classes, bins, ignore_index)
    if (big_h, big_w) != (h, w) and big_h % h == 0 and big_w % w == 0:
        labels = labels[:, ::big_h // h, ::big_w // w]
    elif (big_h, big_w) != (h, w):
        rows = torch.arange(h, device=labels.device) * big_h // h
        labels = labels[:, rows[:, None],
                        torch.arange(w, device=labels.device) * big_w // w]
    return labels if labels.dtype == torch.long else labels.long()

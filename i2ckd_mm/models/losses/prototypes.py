"""Class prototypes: the mean feature of every class, all classes at once.

I2CKD (Karine et al., arXiv 2403.18490) compares teacher and student
*class prototypes*. This module computes them without a Python loop over
classes (one ``scatter_add`` per feature map), in at least float32
whatever the input dtype, per image, per batch, or per batch across all
distributed ranks. See ``docs/method.md`` for the method as implemented.

Nothing here waits for the device: shapes depend only on N, C, K and the
feature size, and bad label ids are reported as small device tensors
(:func:`label_bins`) that the caller reads when it chooses to.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

PROTOTYPE_SCOPES = ('image', 'batch', 'global')
LABEL_RESIZE_MODES = ('nearest', 'mode')


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums are accumulated in: at least float32 (float64 stays
    float64). Plain Python: ``torch.promote_types`` is an operator call."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_labels(labels: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise if ``labels`` holds ids outside ``[0, num_classes)`` + ignore.

    Args:
        labels (Tensor): Integer labels of any shape.
        num_classes (int): Number of classes K.
        ignore_index (int): The id of ignored pixels.
    """
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(
            f'labels must be an integer tensor, got dtype {labels.dtype}')
    bad = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:10].tolist()
        raise ValueError(bad_label_message(values, num_classes, ignore_index))


def labelled(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Where ``labels`` names a class: in ``[0, num_classes)`` and not
    ``ignore_index`` (which may lie inside that range). Same shape, bool."""
    return (labels >= 0) & (labels < num_classes) & (labels != ignore_index)


def bad_label_message(values: Sequence[int], num_classes: int,
                      ignore_index: int) -> str:
    """The error text for label ids outside ``[0, K)`` + ignore (one text
    for the immediate and the deferred check)."""
    return (f'labels contain class ids {list(values)} that are neither in '
            f'[0, {num_classes}) nor the ignore index {ignore_index}; check '
            'num_classes and the dataset\'s label mapping (reduce_zero_label?)')


def label_bins(labels: Tensor, num_classes: int,
               ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Class bins of the pixels and the extremes of the bad ids, no wait.

    Args:
        labels (Tensor): Integer labels of any shape.
        num_classes (int): Number of classes K.
        ignore_index (int): The id of ignored pixels.

    Returns:
        tuple[Tensor, Tensor]: ``bins`` (same shape, int64): the class of a
        labelled pixel, K for ignored pixels and for bad ids (so that a bad
        id never indexes out of range), and ``extremes``, two int64
        scalars: the smallest and the largest label id after every class id
        and the ignore index were replaced by 0 (never a bad id): both are 0
        exactly when every id is a class or the ignore index; otherwise the
        nonzero one(s) are the smallest and the largest bad id
        (:func:`bad_ids`).
    """
    if labels.dtype != torch.long:
        labels = labels.long()
    good = labels.clamp(0, num_classes - 1) == labels  # in [0, K)
    if 0 <= ignore_index < num_classes:
        # an ignore index inside the class range is not a class
        bins = torch.where(good & (labels != ignore_index), labels,
                           num_classes)
    else:
        bins = torch.where(good, labels, num_classes)
    if labels.numel() == 0:  # aminmax has no identity (a shape, no wait)
        return bins, tuple(labels.new_zeros(2).unbind())
    # good ids and the ignore index -> 0, which is never a bad id (0 < K):
    # the minimum is then the smallest negative bad id (or 0), the maximum
    # the largest bad id >= K (or 0)
    ok = good | (labels == ignore_index)
    return bins, torch.aminmax(torch.where(ok, 0, labels))


def bad_ids(extremes: Sequence[int]) -> List[int]:
    """The smallest and largest bad label id named by :func:`label_bins`'s
    ``extremes`` (read on the host): empty if the labels were good."""
    return sorted({int(v) for v in extremes} - {0})


def resize_labels(labels: Tensor,
                  size: Tuple[int, int],
                  num_classes: int,
                  ignore_index: int = 255,
                  mode: str = 'nearest') -> Tensor:
    """Resize labels ``N x H x W`` to the feature size ``N x h x w``.

    Args:
        labels (Tensor): Ground truth, shape (N, H, W), integer.
        size (tuple[int, int]): Target (h, w).
        num_classes (int): Number of classes K (used by ``mode``).
        ignore_index (int): Ignored label id; stays ignored.
        mode (str): ``'nearest'`` (default, the method's chosen option) or
            ``'mode'``: each target pixel takes the most frequent non-ignored
            class of the input pixels it covers (ignore if it covers none).

    Returns:
        Tensor: Labels of shape (N, h, w), int64.
    """
    if mode not in LABEL_RESIZE_MODES:
        raise ValueError(f'label resize mode must be one of '
                         f'{LABEL_RESIZE_MODES}, got {mode!r}')
    if labels.dtype != torch.long:
        labels = labels.long()
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    if mode == 'nearest':
        # F.interpolate(mode='nearest') picks source index floor(i * H / h);
        # gathering those rows/columns reads only h*w pixels (no float copy
        # of the full-resolution labels) and is exact in integers.
        (src_h, src_w), (h, w) = labels.shape[-2:], size
        if src_h % h == 0 and src_w % w == 0:
            # integer scale (the usual 1/8): floor(i * H / h) = i * (H / h),
            # a strided view, no copy
            return labels[:, ::src_h // h, ::src_w // w]
        rows = torch.arange(h, device=labels.device) * src_h // h
        cols = torch.arange(w, device=labels.device) * src_w // w
        return labels[:, rows][:, :, cols]
    # Bad ids (reported by the caller, see label_bins) and ignored pixels
    # vote for no class. A comparison, not F.one_hot: it validates ids
    # itself (a device wait) and would index out of range on bad ones.
    bins, _ = label_bins(labels, num_classes, ignore_index)
    classes = torch.arange(num_classes, device=labels.device)
    onehot = (bins.unsqueeze(1) == classes.view(1, -1, 1, 1)).float()
    votes = F.adaptive_avg_pool2d(onehot, size)
    best_votes, best = votes.max(dim=1)
    return torch.where(best_votes > 0, best, torch.full_like(best,
                                                             ignore_index))


def world_size() -> int:
    """Number of distributed ranks (1 without an initialised group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _collective_device() -> torch.device:
    # NCCL only reduces CUDA tensors; gloo/mpi take CPU tensors.
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def raise_together(error: Optional[BaseException], what: str) -> None:
    """Make every rank raise if any rank's ``error`` is not None.

    Call it on every rank before the first collective of a step that a
    rank may fail to reach: a rank that raised alone would leave the others
    waiting in their all_reduce until the process-group timeout. One
    all_reduce of a per-rank error flag (``world_size`` int32) tells every
    rank which ranks failed; only then (all ranks agree on it) the error
    texts are gathered with ``all_gather_object`` so that each rank's
    message says which rank(s) had bad input and why.

    Args:
        error (BaseException, optional): This rank's error, or None.
        what (str): Who is failing, for the message (e.g.
            ``"I2CKDLoss(prototype_scope='global')"``).

    Raises:
        ValueError: On every rank, when at least one rank had an error
            (chained to this rank's own error, if any).
    """
    n_ranks, rank = dist.get_world_size(), dist.get_rank()
    flags = torch.zeros(n_ranks, dtype=torch.int32,
                        device=_collective_device())
    if error is not None:
        flags[rank] = 1
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    bad = flags.nonzero().flatten().tolist()
    if not bad:
        return
    texts: List[Optional[str]] = [None] * n_ranks
    dist.all_gather_object(
        texts, None if error is None else f'{type(error).__name__}: {error}')
    details = '; '.join(f'rank {r}: {texts[r]}' for r in bad)
    raise ValueError(
        f'{what}: bad input on rank(s) {bad} (this is rank {rank}); every '
        'rank stops here rather than wait in the prototype all_reduce. '
        f'{details}') from error


class _SumWithGlobalValue(torch.autograd.Function):
    """all_reduce(SUM) whose backward is the DDP-consistent local gradient.

    Forward returns the sum over ranks. Backward passes ``world_size * grad``
    to the local input: every rank computes the same loss of the global
    prototypes, and DDP then *averages* the ranks' gradients, so the averaged
    gradient equals that of one process on the concatenated batch.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.world_size = dist.get_world_size()
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad * ctx.world_size


class _ClassSums(torch.autograd.Function):
    """Per-class sums of one or two maps with a one-gather backward.

    Autograd's own backward of ``stack(scatter_add(...))[..., :K]`` is a
    dozen operators (slice, unstack, zero gradients for maps that need
    none, a pad and a gather per map); the gradient of a pixel is simply
    its class's gradient (0 for bin K), so this one pads once and gathers
    once per map that needs a gradient. Two fixed map arguments, not
    ``*maps``: torch.compile cannot trace a Function's varargs.
    """

    @staticmethod
    def forward(ctx, bins: Tensor, num_classes: int, first: Tensor,
                second: Optional[Tensor]) -> Tensor:
        n, c, hw = first.shape
        index = bins.view(n, 1, hw).expand(n, c, hw)
        zeros = first.new_zeros(n, c, num_classes + 1)
        ctx.save_for_backward(index)
        maps = (first, ) if second is None else (first, second)
        return torch.stack([zeros.scatter_add(2, index, f)
                            for f in maps])[..., :num_classes]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        index, = ctx.saved_tensors
        # bin K (ignored and bad pixels) gets a zero gradient
        padded = F.pad(grad, (0, 1))
        return (None, None, *[
            padded[i].gather(2, index) if needed else None
            for i, needed in enumerate(ctx.needs_input_grad[2:])])


def class_sums(feats_list: Sequence[Tensor], bins: Tensor,
               num_classes: int) -> Tensor:
    """Per-class feature sums, channel-major, no wait.

    ``S[i, n, :, k] = sum_{p: bins[n, p] = k} F_i[n, :, p]``: one
    ``scatter_add`` per map into K + 1 bins (bin K collects the ignored
    pixels and is dropped, so their features, even NaN/Inf, reach no sum),
    the maps' sums stacked so that what follows runs once for all of them.
    The gradient is a gather of the class gradients (one write of the
    (N, C, hw) gradient), for the maps that need one.

    Args:
        feats_list (Sequence[Tensor]): One or two (M) feature maps
            (N, C, hw) with the same shape and dtype (at least float32),
            e.g. student and teacher.
        bins (Tensor): (N, hw) int64 class bins in [0, K] (:func:`label_bins`).
        num_classes (int): Number of classes K.

    Returns:
        Tensor: sums (M, N, C, K) in the features' dtype.
    """
    if len(feats_list) not in (1, 2):
        raise ValueError('class_sums takes one or two feature maps, got '
                         f'{len(feats_list)}')
    second = feats_list[1] if len(feats_list) == 2 else None
    return _ClassSums.apply(bins, num_classes, feats_list[0], second)


def class_counts(bins: Tensor, num_classes: int, like: Tensor) -> Tensor:
    """Pixel count (N, K) of every class, in ``like``'s dtype and device;
    ``bins`` (N, hw) as in :func:`class_sums` (bin K is dropped)."""
    return like.new_zeros(bins.shape[0], num_classes + 1).scatter_add_(
        1, bins, torch.ones_like(bins, dtype=like.dtype))[:, :num_classes]


def reduce_scope(sums: Sequence[Tensor], counts: Tensor,
                 scope: str) -> Tuple[List[Tensor], Tensor]:
    """Group per-image sums (..., N, C, K) and counts (N, K) by scope.

    ``'image'``: unchanged (G = N). ``'batch'``: summed over the batch
    (G = 1). ``'global'``: summed over the batch and then over all ranks in
    one all_reduce of every sum and the counts together, whose backward
    keeps DDP's averaged gradient equal to one process on the global batch
    (:class:`_SumWithGlobalValue`); world size 1 needs no communication.
    """
    if scope == 'image':
        return list(sums), counts
    sums = [s.sum(-3, keepdim=True) for s in sums]
    counts = counts.sum(0, keepdim=True)
    if scope == 'global' and world_size() > 1:
        parts = sums + [counts]
        packed = _SumWithGlobalValue.apply(
            torch.cat([p.reshape(-1) for p in parts]))
        parts = [chunk.view_as(p) for chunk, p in zip(
            packed.split([p.numel() for p in parts]), parts)]
        sums, counts = parts[:-1], parts[-1]
    return sums, counts


def _flatten_checked(feats_list: Sequence[Tensor], labels: Tensor):
    for feats in feats_list:
        if feats.dim() != 4 or labels.dim() != 3:
            raise ValueError(
                'expected feats N x C x h x w and labels N x h x w, got '
                f'{tuple(feats.shape)} and {tuple(labels.shape)}')
        n, _, h, w = feats.shape
        if labels.shape != (n, h, w):
            raise ValueError(f'labels {tuple(labels.shape)} do not match '
                             f'features {tuple(feats.shape)} (need N x h x w)')
    # fp16/bf16 features are summed in fp32; fp64 stays fp64.
    dtype = accum_dtype(feats_list[0].dtype)
    return [f.flatten(2).to(dtype) for f in feats_list]


def class_prototypes(feats: Tensor,
                     labels: Tensor,
                     num_classes: int,
                     ignore_index: int = 255,
                     scope: str = 'image') -> Tuple[Tensor, Tensor]:
    """Mean feature of every class, vectorised over classes.

    ``P[g, k] = sum_{p: y_p = k} F[g, :, p] / count[g, k]`` where ``g`` runs
    over images (``scope='image'``) or is a single group for the whole batch
    (``'batch'``) or for the batches of all ranks (``'global'``: sums and
    counts are all-reduced; world size 1 needs no communication).

    Args:
        feats (Tensor): Features, shape (N, C, h, w), any float dtype.
        labels (Tensor): Labels at the feature size, shape (N, h, w), int.
            Ids that are neither a class nor ``ignore_index`` are treated as
            ignored here (no wait to check them); validate with
            :func:`check_labels` or :func:`label_bins`.
        num_classes (int): Number of classes K.
        ignore_index (int): Pixels with this label are left out; their
            features, even NaN/Inf, never reach a prototype.
        scope (str): ``'image'`` (default), ``'batch'`` or ``'global'``.

    Returns:
        tuple[Tensor, Tensor]: ``prototypes`` (G, K, C) in at least float32
        (zeros for absent classes) and ``counts`` (G, K) pixel counts, with
        G = N for ``'image'`` and 1 otherwise.
    """
    (protos, ), counts = class_prototypes_many([feats], labels, num_classes,
                                               ignore_index, scope)
    return protos, counts


def class_prototypes_many(feats_list: Sequence[Tensor],
                          labels: Tensor,
                          num_classes: int,
                          ignore_index: int = 255,
                          scope: str = 'image'
                          ) -> Tuple[List[Tensor], Tensor]:
    """:func:`class_prototypes` of several feature maps on the same labels.

    The bins and the pixel counts are computed once for all maps (e.g.
    student and teacher), and for ``'global'`` the sums of all maps and the
    counts travel in one all_reduce.

    Args:
        feats_list (Sequence[Tensor]): Features (N, C, h, w) each, with the
            same shape.
        labels, num_classes, ignore_index, scope: as in
            :func:`class_prototypes`.

    Returns:
        tuple[list[Tensor], Tensor]: one (G, K, C) prototype tensor per
        input, and the shared counts (G, K).
    """
    if scope not in PROTOTYPE_SCOPES:
        raise ValueError(
            f'prototype scope must be one of {PROTOTYPE_SCOPES}, got {scope!r}')
    flats = _flatten_checked(feats_list, labels)
    bins, _ = label_bins(labels.flatten(1), num_classes, ignore_index)
    # one scatter per map (maps may differ in channels), the counts once
    sums, counts = reduce_scope(
        [class_sums([f], bins, num_classes)[0] for f in flats],
        class_counts(bins, num_classes, flats[0]), scope)
    denom = counts.clamp(min=1).unsqueeze(1)
    return [(s / denom).transpose(1, 2) for s in sums], counts

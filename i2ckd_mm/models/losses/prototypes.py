"""Class prototypes: the mean feature of every class, all classes at once.

I2CKD (Karine et al., arXiv 2403.18490) compares teacher and student
*class prototypes*. This module computes them without a Python loop over
classes (a one-hot matmul or one ``scatter_add``), in at least float32
whatever the input dtype, per image, per batch, or per batch across all
distributed ranks. See ``docs/method.md`` for the method as implemented.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

PROTOTYPE_SCOPES = ('image', 'batch', 'global')
LABEL_RESIZE_MODES = ('nearest', 'mode')
REDUCTIONS = ('auto', 'matmul', 'scatter')
#: Below this many classes 'auto' sums by one-hot matmul on CPU, from it on
#: by scatter_add. The matmul does K multiply-adds per feature value, so its
#: time grows with K; scatter_add does one add, but with few classes its
#: writes pile onto the same few accumulators. Measured crossover (forward
#: only, the backward is the same index_select for both; 1 thread, 256
#: channels, 2 x 64 x 128): ~16 classes (bmm 3.4 / scatter 3.3 ms at 16,
#: 4.2 / 3.3 ms at 19, 1.4 / 8.4 ms at 2).
MATMUL_MAX_CLASSES = 16


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums are accumulated in: at least float32."""
    return torch.promote_types(dtype, torch.float32)


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
        raise ValueError(
            f'labels contain class ids {values} that are neither in '
            f'[0, {num_classes}) nor the ignore index {ignore_index}; check '
            'num_classes and the dataset\'s label mapping (reduce_zero_label?)')


def labelled(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Where ``labels`` names a class: in ``[0, num_classes)`` and not
    ``ignore_index`` (which may lie inside that range). Same shape, bool."""
    return (labels >= 0) & (labels < num_classes) & (labels != ignore_index)


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
    labels = labels.long()
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    if mode == 'nearest':
        # F.interpolate(mode='nearest') picks source index floor(i * H / h);
        # gathering those rows/columns reads only h*w pixels (no float copy
        # of the full-resolution labels) and is exact in integers.
        (src_h, src_w), (h, w) = labels.shape[-2:], size
        rows = torch.arange(h, device=labels.device) * src_h // h
        cols = torch.arange(w, device=labels.device) * src_w // w
        return labels[:, rows][:, :, cols]
    valid = labels != ignore_index
    bins = torch.where(valid, labels, torch.full_like(labels, num_classes))
    onehot = F.one_hot(bins, num_classes + 1).permute(0, 3, 1, 2).float()
    votes = F.adaptive_avg_pool2d(onehot, size)[:, :num_classes]
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


def class_prototypes(feats: Tensor,
                     labels: Tensor,
                     num_classes: int,
                     ignore_index: int = 255,
                     scope: str = 'image',
                     reduction: str = 'auto') -> Tuple[Tensor, Tensor]:
    """Mean feature of every class, vectorised over classes.

    ``P[g, k] = sum_{p: y_p = k} F[g, :, p] / count[g, k]`` where ``g`` runs
    over images (``scope='image'``) or is a single group for the whole batch
    (``'batch'``) or for the batches of all ranks (``'global'``: sums and
    counts are all-reduced; world size 1 needs no communication).

    Args:
        feats (Tensor): Features, shape (N, C, h, w), any float dtype.
        labels (Tensor): Labels at the feature size, shape (N, h, w), int.
        num_classes (int): Number of classes K.
        ignore_index (int): Pixels with this label are left out; their
            features, even NaN/Inf, never reach a prototype.
        scope (str): ``'image'`` (default), ``'batch'`` or ``'global'``.
        reduction (str): How per-class sums are formed: ``'matmul'``
            (one-hot bmm), ``'scatter'`` (``scatter_add``) or ``'auto'``
            (default: matmul on GPU or below ``MATMUL_MAX_CLASSES`` classes,
            where it measured faster on CPU). Same values, same gradient
            (an ``index_select`` of the class gradients either way).

    Returns:
        tuple[Tensor, Tensor]: ``prototypes`` (G, K, C) in at least float32
        (zeros for absent classes) and ``counts`` (G, K) pixel counts, with
        G = N for ``'image'`` and 1 otherwise.
    """
    (protos, ), counts = class_prototypes_many([feats], labels, num_classes,
                                               ignore_index, scope, reduction)
    return protos, counts


def class_prototypes_many(feats_list: Sequence[Tensor],
                          labels: Tensor,
                          num_classes: int,
                          ignore_index: int = 255,
                          scope: str = 'image',
                          reduction: str = 'auto'
                          ) -> Tuple[List[Tensor], Tensor]:
    """:func:`class_prototypes` of several feature maps on the same labels.

    The label one-hot and the pixel counts are computed once for all maps
    (e.g. student and teacher), and for ``'global'`` the sums of all maps
    and the counts travel in one all_reduce.

    Args:
        feats_list (Sequence[Tensor]): Features (N, C_i, h, w) each.
        labels, num_classes, ignore_index, scope, reduction: as in
            :func:`class_prototypes`.

    Returns:
        tuple[list[Tensor], Tensor]: one (G, K, C_i) prototype tensor per
        input, and the shared counts (G, K).
    """
    if scope not in PROTOTYPE_SCOPES:
        raise ValueError(
            f'prototype scope must be one of {PROTOTYPE_SCOPES}, got {scope!r}')
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, '
                         f'got {reduction!r}')
    for feats in feats_list:
        if feats.dim() != 4 or labels.dim() != 3:
            raise ValueError(
                'expected feats N x C x h x w and labels N x h x w, got '
                f'{tuple(feats.shape)} and {tuple(labels.shape)}')
        n, _, h, w = feats.shape
        if labels.shape != (n, h, w):
            raise ValueError(f'labels {tuple(labels.shape)} do not match '
                             f'features {tuple(feats.shape)} (need N x h x w)')
    if reduction == 'auto':
        reduction = ('matmul' if labels.is_cuda
                     or num_classes < MATMUL_MAX_CLASSES else 'scatter')
    # fp16/bf16 features are summed in fp32; fp64 stays fp64.
    dtype = accum_dtype(feats_list[0].dtype)
    n, h, w = labels.shape
    y = labels.reshape(n, h * w).long()
    # bins: the class of each pixel, or K for ignored ones (which includes an
    # ignore_index inside [0, K)); bin K is never summed.
    bins = torch.where(labelled(y, num_classes, ignore_index), y,
                       torch.full_like(y, num_classes))
    onehot = None
    if reduction == 'matmul':
        classes = torch.arange(num_classes, device=y.device).view(1, -1, 1)
        onehot = (bins.unsqueeze(1) == classes).to(dtype)  # (N, K, hw)
    flats = [f.reshape(n, f.shape[1], h * w).to(dtype) for f in feats_list]
    sums = [_ClassSums.apply(f, bins, num_classes, onehot) for f in flats]
    if onehot is not None and not bool(
            torch.stack([torch.isfinite(s).all() for s in sums]).all()):
        # An ignored pixel has an all-zero one-hot column, but NaN * 0 is
        # NaN: a NaN/Inf feature there reaches every class's sum. Checking
        # the small (N, K, C) sums of all maps costs one wait for the device
        # per call; only then the ignored pixels are zeroed and the sums
        # taken again, so that ignored pixels never matter (as with
        # scatter_add) and a labelled NaN still shows.
        ignored = (bins == num_classes).unsqueeze(1)
        sums = [
            _ClassSums.apply(f.masked_fill(ignored, 0), bins, num_classes,
                             onehot) for f in flats
        ]
    counts = torch.zeros(n, num_classes + 1, dtype=dtype,
                         device=y.device).scatter_add_(
        1, bins, torch.ones(n, h * w, dtype=dtype,
                            device=y.device))[:, :num_classes]
    if scope != 'image':
        sums = [s.sum(0, keepdim=True) for s in sums]
        counts = counts.sum(0, keepdim=True)
        if scope == 'global' and world_size() > 1:
            # One all_reduce for every map's sums and the counts.
            parts = sums + [counts]
            packed = _SumWithGlobalValue.apply(
                torch.cat([p.reshape(-1) for p in parts]))
            parts = [
                chunk.view_as(p) for chunk, p in zip(
                    packed.split([p.numel() for p in parts]), parts)
            ]
            sums, counts = parts[:-1], parts[-1]
    denom = counts.clamp(min=1).unsqueeze(-1)
    return [s / denom for s in sums], counts


class _ClassSums(torch.autograd.Function):
    """Per-class sums of features, (N, C, hw) -> (N, K, C).

    Forward: with ``onehot`` (N, K, hw), one bmm ``onehot @ flat^T`` (on
    CPU faster than scatter_add below ``MATMUL_MAX_CLASSES`` classes, and in
    this orientation faster than ``flat @ onehot^T``, 3.6 vs 4.6 ms at 19
    classes); without it, one ``scatter_add``. Either reads the features
    once and gives (N, K, C), the prototypes' layout (no transpose copy).

    Backward: the gradient of pixel p is the gradient row of its class (0
    for bin K, the ignored pixels), i.e. an ``index_select`` of the small
    (K + 1, C) table per image: one write of the (N, C, hw) gradient, where
    the bmm / scatter_add backward would again multiply by the one-hot
    (K times the arithmetic) or gather with an (N, C, hw) index.
    """

    @staticmethod
    def forward(ctx, flat: Tensor, bins: Tensor, num_classes: int,
                onehot: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(bins)
        if onehot is not None:
            # NaN/Inf at ignored pixels: see class_prototypes_many
            return torch.bmm(onehot, flat.transpose(1, 2))
        n, c, hw = flat.shape
        sums = flat.new_zeros(n, c, num_classes + 1).scatter_add_(
            2, bins.unsqueeze(1).expand(n, c, hw), flat)
        return sums[..., :num_classes].transpose(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        bins, = ctx.saved_tensors
        n, k, c = grad.shape
        table = torch.cat([grad, grad.new_zeros(n, 1, c)], dim=1)
        out = grad.new_empty(n, c, bins.shape[1])
        for i in range(n):  # a loop over images, not classes or pixels
            torch.index_select(table[i].t(), 1, bins[i], out=out[i])
        return out, None, None, None

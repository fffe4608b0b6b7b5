"""Class prototypes: the mean feature of every class, all classes at once.

I2CKD (Karine et al., arXiv 2403.18490) compares teacher and student
*class prototypes*. This module computes them with one ``scatter_add`` over
the feature map (no Python loop over classes), in float32 whatever the input
dtype, per image, per batch, or per batch across all distributed ranks.
"""
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

PROTOTYPE_SCOPES = ('image', 'batch', 'global')
LABEL_RESIZE_MODES = ('nearest', 'mode')
REDUCTIONS = ('auto', 'matmul', 'scatter')
#: Below this many classes 'auto' uses the one-hot matmul on CPU (measured
#: crossover with scatter_add: ~64 classes at 256 channels, 64x128).
MATMUL_MAX_CLASSES = 64


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
        ignore_index (int): Pixels with this label are left out.
        scope (str): ``'image'`` (default), ``'batch'`` or ``'global'``.
        reduction (str): How per-class sums are formed: ``'matmul'``
            (one-hot bmm), ``'scatter'`` (``scatter_add``) or ``'auto'``
            (default: matmul on GPU or below ``MATMUL_MAX_CLASSES`` classes,
            where it measured faster on CPU; see benchmarks/). Same values.

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

    The label one-hot and the pixel counts (and, for ``'global'``, their
    all-reduce) are computed once for all maps, e.g. student and teacher.

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
    n, h, w = labels.shape
    y = labels.reshape(n, 1, h * w).long()
    # Ignored pixels go to an extra bin K that is dropped afterwards.
    bins = torch.where(y == ignore_index, torch.full_like(y, num_classes), y)
    if reduction == 'auto':
        reduction = ('matmul' if labels.is_cuda
                     or num_classes < MATMUL_MAX_CLASSES else 'scatter')
    # fp16/bf16 features are summed in fp32; fp64 stays fp64.
    dtype = accum_dtype(feats_list[0].dtype)
    flats = [f.reshape(n, f.shape[1], h * w).to(dtype) for f in feats_list]
    if reduction == 'matmul':
        # One-hot (N, hw, K+1): features @ one-hot is a BLAS bmm forward and
        # backward; on CPU faster than scatter_add below ~64 classes.
        classes = torch.arange(num_classes + 1, device=y.device).view(1, -1, 1)
        onehot = (bins == classes).to(dtype).transpose(1, 2)
        sums = [torch.bmm(flat, onehot)[..., :num_classes] for flat in flats]
        counts = onehot.sum(1)[:, :num_classes]
    else:
        sums = [
            flat.new_zeros(n, flat.shape[1], num_classes + 1).scatter_add(
                2, bins.expand(n, flat.shape[1], h * w), flat)[
                    ..., :num_classes] for flat in flats
        ]
        counts = torch.zeros(n, num_classes + 1, dtype=dtype,
                             device=y.device).scatter_add_(
            1, bins[:, 0], torch.ones(n, h * w, dtype=dtype,
                                      device=y.device))[:, :num_classes]
    if scope != 'image':
        sums = [s.sum(0, keepdim=True) for s in sums]
        counts = counts.sum(0, keepdim=True)
        if (scope == 'global' and dist.is_available()
                and dist.is_initialized() and dist.get_world_size() > 1):
            sums = [_SumWithGlobalValue.apply(s) for s in sums]
            counts = _SumWithGlobalValue.apply(counts)
    denom = counts.clamp(min=1).unsqueeze(-1)
    return [s.transpose(1, 2) / denom for s in sums], counts

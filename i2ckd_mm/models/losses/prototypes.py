"""Class prototypes: the mean feature of every class, all classes at once.

I2CKD (Karine et al., arXiv 2403.18490) compares teacher and student class
prototypes; ``docs/method.md`` describes the method as implemented. Shapes
depend only on N, C, K and the sizes; nothing here waits for the device but
:func:`raise_together` (``'global'`` scope under DDP: one read per step).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .inputs import PROTOTYPE_SCOPES, accum_dtype, label_bins


def world_size() -> int:
    """Number of distributed ranks (1 without an initialised group)."""
    return (dist.get_world_size()
            if dist.is_available() and dist.is_initialized() else 1)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the ranks' gradients (the
    derivative of a sum over ranks). Ours because
    ``torch.distributed.nn.functional.all_reduce``, the same, is deprecated
    and warns at every call."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Each tensor (one dtype) summed over all ranks, in one all_reduce.

    When every rank computes the same loss from these sums, the backward
    gives each rank ``world_size`` times its part of that loss's gradient,
    and DDP's average over ranks is the gradient of one process on the
    global batch. With one process: the tensors, unchanged.
    """
    if world_size() == 1:
        return tensors
    flat = _AllReduceSum.apply(torch.cat([x.reshape(-1) for x in tensors]))
    return tuple(part.view_as(x) for part, x in zip(
        flat.split([x.numel() for x in tensors]), tensors))


def raise_together(error: Optional[BaseException], bad: Optional[Tensor],
                   what: str) -> Tensor:
    """Make every rank raise if one rank's input ``error`` is not None.

    Called on every rank before the first collective that a failed rank
    would not reach (others would wait there until the process-group
    timeout). One all_reduce (MAX) of a flag per rank and of the bad label
    ids ``bad`` (:func:`label_bins`; None with an error), one wait to read
    the flags; the texts are gathered only on failure.

    Returns:
        Tensor: ``bad`` merged over all ranks (same device).

    Raises:
        ValueError: On every rank, naming the failed rank(s) and why.
    """
    n, rank = dist.get_world_size(), dist.get_rank()
    flags = torch.zeros(n + 2, dtype=torch.long, device=(
        torch.device('cuda', torch.cuda.current_device())  # NCCL: CUDA
        if dist.get_backend() == 'nccl' else torch.device('cpu')))
    if error is None:
        flags[n:] = bad
    else:
        flags[rank] = 1
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    failed = [r for r, flag in enumerate(flags[:n].tolist()) if flag]
    if failed:
        texts = [None] * n
        dist.all_gather_object(texts, None if error is None else
                               f'{type(error).__name__}: {error}')
        raise ValueError(
            f'{what}: bad input on rank(s) {failed} (this is rank {rank}); '
            'every rank stops here rather than wait in the prototype '
            'all_reduce. ' + '; '.join(f'rank {r}: {texts[r]}'
                                        for r in failed)) from error
    return flags[n:].to(bad.device)


def class_means(feats: Sequence[Tensor], bins: Tensor, num_classes: int,
                scope: str) -> Tuple[Tensor, Tensor]:
    """Class means of M feature maps on the same labels: the one path to them.

    One ``scatter_add`` per map into K + 1 bins; bin K (ignored pixels, bad
    ids) is dropped, so their features, even NaN/Inf, reach no mean and get
    a zero gradient. Grouped by ``scope``: per image (G = N), per batch
    (G = 1), or per batch summed over all ranks (:func:`sum_over_ranks`).

    Args:
        feats (Sequence[Tensor]): M maps (N, C, hw), one shape and dtype.
        bins (Tensor): (N, hw) int64 in [0, K] (:func:`label_bins`).
        num_classes (int): Number of classes K.
        scope (str): ``'image'``, ``'batch'`` or ``'global'``.

    Returns:
        tuple[Tensor, Tensor]: means (M, G, C, K), zero for an absent
        class, and pixel counts (G, K), both in the maps' dtype.
    """
    if scope not in PROTOTYPE_SCOPES:
        raise ValueError(f'prototype scope must be one of {PROTOTYPE_SCOPES}'
                         f', got {scope!r}')
    n, c, hw = feats[0].shape
    zeros = feats[0].new_zeros(n, c, num_classes + 1)
    index = bins.unsqueeze(1).expand(n, c, hw)
    sums = torch.stack([zeros.scatter_add(2, index, f) for f in feats])
    counts = zeros[:, 0].scatter_add(1, bins, torch.ones_like(
        bins, dtype=zeros.dtype))[:, :num_classes]
    sums = sums[..., :num_classes]
    if scope != 'image':
        sums, counts = sums.sum(1, keepdim=True), counts.sum(0, keepdim=True)
    if scope == 'global':
        sums, counts = sum_over_ranks(sums, counts)
        counts = counts.detach()  # (its gradient would be thrown away)
    return sums / counts.clamp(min=1).unsqueeze(1), counts


def class_prototypes(feats: Tensor, labels: Tensor, num_classes: int,
                     ignore_index: int = 255,
                     scope: str = 'image') -> Tuple[Tensor, Tensor]:
    """Mean feature (G, K, C) of every class and the counts (G, K), in at
    least float32 (:func:`class_means`), of features (N, C, h, w) and
    labels (N, h, w) at their size. Bad label ids count as ignored here
    (no wait); :func:`label_bins` reports them."""
    if feats.dim() != 4 or labels.dim() != 3:
        raise ValueError('expected feats N x C x h x w and labels N x h x w, '
                         f'got {tuple(feats.shape)} and {tuple(labels.shape)}')
    if labels.shape != feats.shape[:1] + feats.shape[2:]:
        raise ValueError(f'labels {tuple(labels.shape)} do not match '
                         f'features {tuple(feats.shape)} (need N x h x w)')
    bins = label_bins(labels.flatten(1), num_classes, ignore_index)[0]
    means, counts = class_means([feats.flatten(2).to(accum_dtype(
        feats.dtype))], bins, num_classes, scope)
    return means[0].transpose(1, 2), counts

"""The once-per-step input check of :class:`I2CKDDistill`.

:func:`clean_labels` finds, on the labels' device and without waiting for
it, the ids that are neither a class nor the ignore index and replaces them
by the ignore index, so that no loss indexes with them (a CUDA
cross-entropy would stop at a device-side assert, a CPU one with its own
IndexError, and under DDP on one rank alone). :func:`reduce_status` merges
what it found with the statuses of the distillation losses, across ranks
when distributed, and reads the result once: the step's one wait.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, is_distributed
from torch import Tensor


def clean_labels(labels: Tensor, num_classes: int,
                 ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Labels with every id that is neither in ``[0, num_classes)`` nor
    ``ignore_index`` replaced by ``ignore_index``, and what was replaced.

    Args:
        labels (Tensor): Integer labels, any shape.
        num_classes (int): Number of classes K.
        ignore_index (int): The label id of ignored pixels.

    Returns:
        tuple[Tensor, Tensor]: The cleaned labels (same shape and dtype;
        ``labels`` itself is not changed) and a (2,) int64 status on their
        device: minus the smallest negative bad id and the largest bad id
        >= K, each 0 if there is none (the encoding of the first two entries
        of :meth:`I2CKDLoss.compute`'s status, so the loss's message can
        name them). No value is read: no wait for the device.
    """
    ok = (labels.clamp(0, num_classes - 1) == labels) | (
        labels == ignore_index)
    if labels.numel() == 0:  # aminmax has no identity (a shape, no wait)
        return labels, labels.new_zeros(2, dtype=torch.long)
    # good ids -> 0, never a bad id: the extremes are the bad ids' (or 0)
    lo, hi = torch.aminmax(torch.where(ok, 0, labels).long())
    return (torch.where(ok, labels, ignore_index),
            torch.stack([-lo, hi]).clamp(min=0))


def reduce_status(parts: List[Tensor]) -> List[int]:
    """Concatenate 1-D statuses that grow with what is wrong (int64 or
    bool), take the maximum over the ranks when distributed (one
    all_reduce) and read it (one wait).

    Returns:
        list[int]: The entries of ``parts`` in order, each the maximum over
        all ranks.
    """
    status = torch.cat([p.reshape(-1).long() for p in parts])
    if is_distributed():
        all_reduce(status, op='max')
    return status.tolist()


def first_trainable(modules) -> Optional[Tensor]:
    """The first parameter with ``requires_grad`` of ``modules``, or None."""
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                return p
    return None

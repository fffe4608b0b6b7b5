"""The once-per-step input check of :class:`I2CKDDistill`.

Two parts: :class:`HostLabelCheck` looks at the labels on the host, where
the dataloader leaves them, before the data preprocessor moves them (no
wait for the device); :func:`reduce_status` merges what it found with the
device statuses of the distillation losses, across ranks when distributed,
and reads the result once (the step's one wait).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, is_distributed
from torch import Tensor

#: The host check's status with nothing to report: minus the smallest and
#: the largest bad label id, 0 when there is none (the encoding of the first
#: two entries of :meth:`I2CKDLoss.compute`'s status).
LABELS_CLEAR = (0, 0)


class HostLabelCheck:
    """A forward pre-hook of the data preprocessor that checks the training
    labels on the host.

    For every ``data_samples[i].gt_sem_seg`` of a training batch it finds
    the ids that are neither in ``[0, num_classes)`` nor ``ignore_index``;
    there are such ids, it replaces them by ``ignore_index`` in place (so
    that no loss, the student's included, indexes with them and nothing
    crashes on one rank alone) and records the smallest and the largest
    (:attr:`found`), which :meth:`take` hands to the step check. It raises
    nothing itself: under DDP a rank that raised alone would leave the
    others waiting in a collective.

    Args:
        num_classes (int): Number of classes K.
        ignore_index (int): The label id of ignored pixels.
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.found = list(LABELS_CLEAR)

    def __call__(self, module, args: tuple, kwargs: dict) -> None:
        """``register_forward_pre_hook(check, with_kwargs=True)``: the
        preprocessor's ``forward(data, training=False)`` arguments."""
        training = kwargs.get('training', args[1] if len(args) > 1 else False)
        data = kwargs.get('data', args[0] if args else None)
        if not training or not isinstance(data, dict):
            return
        for sample in data.get('data_samples') or ():
            gt = getattr(sample, 'gt_sem_seg', None)
            if gt is not None and 'data' in gt:
                self.check(gt.data)

    def check(self, labels: Tensor) -> None:
        """Record the bad ids of ``labels`` (any shape, integer) and replace
        them by ``ignore_index``, in place."""
        k, ignore = self.num_classes, self.ignore_index
        # ignore -> 0 (never bad): the minimum is then the smallest bad
        # negative id or >= 0, the maximum the largest bad id >= K or < K
        lo, hi = (int(v) for v in torch.aminmax(
            torch.where(labels == ignore, 0, labels)))
        if lo >= 0 and hi < k:
            return
        bad = ((labels < 0) | (labels >= k)) & (labels != ignore)
        labels[bad] = ignore
        self.found = [max(self.found[0], -min(lo, 0)),
                      max(self.found[1], hi if hi >= k else 0)]

    def take(self) -> List[int]:
        """The status of the batches checked since the last take (two
        ints, :data:`LABELS_CLEAR` if all was well); clears it."""
        found, self.found = self.found, list(LABELS_CLEAR)
        return found


def reduce_status(host: Sequence[int], device_parts: List[Tensor],
                  device: torch.device) -> Tuple[List[int], bool]:
    """Merge the host label status and the device statuses of one step,
    take the maximum over the ranks and read it: one all_reduce (when
    distributed) and one wait.

    Args:
        host (Sequence[int]): :meth:`HostLabelCheck.take`.
        device_parts (list[Tensor]): 1-D int64 tensors on ``device``, each
            growing with what is wrong (the losses' statuses, flags).
        device (torch.device): Where the statuses are.

    Returns:
        tuple[list[int], bool]: ``host`` followed by ``device_parts``,
        each entry the maximum over all ranks; and whether the reduction
        ran across ranks.
    """
    if any(host):
        head = torch.tensor(host, dtype=torch.long, device=device)
    else:
        # no copy from the host (it would wait for the device's queue)
        head = torch.zeros(len(host), dtype=torch.long, device=device)
    status = torch.cat([head] + [p.to(device, torch.long).reshape(-1)
                                 for p in device_parts])
    distributed = is_distributed()
    if distributed:
        all_reduce(status, op='max')
    return status.tolist(), distributed


def first_trainable(modules) -> Optional[Tensor]:
    """The first parameter with ``requires_grad`` of ``modules``, or None."""
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                return p
    return None

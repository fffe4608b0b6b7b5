"""A deliberately naive I2CKD loss: Python loops over classes and pairs.

This is the reference the benchmark compares :class:`i2ckd_mm.models.losses.
I2CKDLoss` against. It computes the *same* literal loss (per-image
prototypes, Euclidean distance with the ``torch.nn.TripletMarginLoss``
convention, all other present classes as negatives, one mean over all
triplets of the batch), but the way a first implementation usually looks:
one boolean mask and one masked mean per class, then one hinge per
(anchor class, negative class) pair. It is not used by the package.
"""
import torch.nn.functional as F
from torch import Tensor


def naive_i2ckd_loss(preds_S: Tensor,
                     preds_T: Tensor,
                     gt: Tensor,
                     num_classes: int,
                     margin: float = 1.0,
                     ignore_index: int = 255) -> Tensor:
    """Literal I2CKD loss with per-class masks and a loop over class pairs.

    Args:
        preds_S (Tensor): Student feature (N, C, h, w).
        preds_T (Tensor): Teacher feature (N, C, h, w) (same size: the
            benchmark does not exercise the bilinear student resize).
        gt (Tensor): Labels (N, H, W) int64; resized to (h, w) by nearest.
        num_classes (int): Number of classes K.
        margin (float): Triplet margin. Defaults to 1.0.
        ignore_index (int): Ignored label id. Defaults to 255.

    Returns:
        Tensor: Scalar loss (0 with a gradient path when no triplet exists).
    """
    if preds_S.shape != preds_T.shape:
        raise ValueError('naive_i2ckd_loss needs equal feature shapes, got '
                         f'{tuple(preds_S.shape)} and {tuple(preds_T.shape)}')
    preds_T = preds_T.detach()
    size = preds_S.shape[-2:]
    labels = F.interpolate(gt[:, None].double(), size=size,
                           mode='nearest')[:, 0].long()
    total = preds_S.sum() * 0.0
    n_triplets = 0
    for n in range(preds_S.shape[0]):
        protos_s, protos_t = {}, {}
        for k in range(num_classes):
            mask = labels[n] == k  # (h, w)
            if k == ignore_index or not bool(mask.any()):
                continue
            protos_s[k] = preds_S[n][:, mask].mean(dim=1)  # (C,)
            protos_t[k] = preds_T[n][:, mask].mean(dim=1)
        for k in protos_s:
            d_pos = F.pairwise_distance(protos_s[k][None], protos_t[k][None])
            for j in protos_t:
                if j == k:
                    continue
                d_neg = F.pairwise_distance(protos_s[k][None],
                                            protos_t[j][None])
                total = total + F.relu(d_pos - d_neg + margin).sum()
                n_triplets += 1
    return total / max(n_triplets, 1)

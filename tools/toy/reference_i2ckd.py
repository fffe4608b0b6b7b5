"""The one reference I2CKD loss of the tests and benchmarks: plain loops.

Independent of the package (it imports nothing from ``i2ckd_mm``): labels
are resized by an explicit index formula or vote count, prototypes are
boolean-mask means, one class and one image at a time, and triplets are
formed by loops over class pairs. It is written for clarity, not speed: the
benchmark times it as the "naive loop" next to ``I2CKDLoss``, and every
test that needs an expected value from random input gets it from here.

The loss it computes is the one of ``docs/method.md``: for every group g
(an image, or the batch) and present classes k != j,
``hinge = max(0, d(Ps_gk, Pt_gk) - d(Ps_gk, Pt_gj) + margin)``, one mean
over all triplets of the batch, options as in ``I2CKDLoss``.

Script-side code like the rest of ``tools/toy``: the tests and the
benchmarks import it as ``from toy import reference_i2ckd``.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = 255
# torch.nn.functional.pairwise_distance (and so TripletMarginLoss) adds
# this to the difference before the norm.
PAIRWISE_EPS = 1e-6


def resize_labels(labels: Tensor, size: Tuple[int, int], num_classes: int,
                  ignore_index: int = IGNORE,
                  mode: str = 'nearest') -> Tensor:
    """Labels (N, H, W) -> (N, h, w), one output pixel at a time.

    ``'nearest'``: output (i, j) takes input (floor(i H / h), floor(j W / w))
    (PyTorch's nearest rule). ``'mode'``: it takes the most frequent
    non-ignored class of the input window adaptive average pooling uses,
    rows floor(i H / h) .. ceil((i + 1) H / h) - 1 (same for columns);
    ties go to the smallest id; a window with no labelled pixel is ignored.
    """
    n, big_h, big_w = labels.shape
    h, w = size
    if (big_h, big_w) == (h, w):
        return labels.long().clone()
    out = torch.empty(n, h, w, dtype=torch.long)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                if mode == 'nearest':
                    out[b, i, j] = labels[b, i * big_h // h, j * big_w // w]
                    continue
                r0, r1 = i * big_h // h, math.ceil((i + 1) * big_h / h)
                c0, c1 = j * big_w // w, math.ceil((j + 1) * big_w / w)
                votes = [0] * num_classes
                for v in labels[b, r0:r1, c0:c1].flatten().tolist():
                    if v != ignore_index:
                        votes[v] += 1
                best = max(votes)
                out[b, i, j] = votes.index(best) if best > 0 else ignore_index
    return out.to(labels.device)


def prototypes(feats: Tensor, labels: Tensor, num_classes: int,
               ignore_index: int = IGNORE,
               scope: str = 'image') -> Tuple[Tensor, Tensor]:
    """Masked mean per group and class.

    Args:
        feats (Tensor): (N, C, h, w).
        labels (Tensor): (N, h, w) at the feature size.
        scope (str): ``'image'`` (a group per image) or ``'batch'`` /
            ``'global'`` (one group: all pixels of the batch).

    Returns:
        tuple[Tensor, Tensor]: prototypes (G, K, C) in the dtype of
        ``feats`` (zero rows for absent classes) and counts (G, K) int64.
    """
    n, c = feats.shape[:2]
    groups = [[b] for b in range(n)] if scope == 'image' else [list(range(n))]
    protos = feats.new_zeros(len(groups), num_classes, c)
    counts = torch.zeros(len(groups), num_classes, dtype=torch.long)
    for g, images in enumerate(groups):
        for k in range(num_classes):
            if k == ignore_index:
                continue
            pixels = [feats[b][:, labels[b] == k] for b in images]  # (C, m)
            pixels = torch.cat(pixels, dim=1)
            if pixels.shape[1] > 0:
                protos[g, k] = pixels.mean(dim=1)
                counts[g, k] = pixels.shape[1]
    return protos, counts


def pair_distance(a: Tensor, b: Tensor, kind: str = 'euclidean') -> Tensor:
    """Distance of two vectors (C,): TripletMarginLoss's Euclidean
    convention, or ``1 - cos``."""
    if kind == 'euclidean':
        return torch.sqrt(((a - b + PAIRWISE_EPS)**2).sum())
    return 1 - (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-8)


def triplets(ps: Tensor, pt: Tensor,
             present: Tensor) -> List[Tuple[int, int, int]]:
    """Every (group g, anchor class k, negative class j != k), both present
    in g."""
    out = []
    for g in range(ps.shape[0]):
        classes = [k for k in range(ps.shape[1]) if present[g, k]]
        out += [(g, k, j) for k in classes for j in classes if j != k]
    return out


def _term(anchor: Tensor, other: Tensor, present: Tensor, margin: float,
          dist: str, negatives: str) -> Tuple[Optional[Tensor], dict]:
    """Mean hinge with anchors from ``anchor`` and positives/negatives from
    ``other``; None if there is no triplet."""
    hinges, d_pos, d_neg = [], [], []
    for g in range(anchor.shape[0]):
        classes = [k for k in range(anchor.shape[1]) if present[g, k]]
        for k in classes:
            others = [j for j in classes if j != k]
            if not others:
                continue
            dp = pair_distance(anchor[g, k], other[g, k], dist)
            dns = [
                pair_distance(anchor[g, k], other[g, j], dist) for j in others
            ]
            if negatives == 'hardest':
                dns = [min(dns, key=lambda d: float(d.detach()))]
            for dn in dns:
                hinges.append(torch.relu(dp - dn + margin))
                d_neg.append(dn)
    if not hinges:
        return None, dict(hinges=[], d_neg=[])
    return torch.stack(hinges).mean(), dict(hinges=hinges, d_neg=d_neg)


def pixel_term(fs: Tensor, ft: Tensor, labels: Tensor, ps: Tensor,
               pt: Tensor, present: Tensor, tau: float,
               ignore_index: int = IGNORE,
               student_prototypes: str = 'own') -> Optional[Tensor]:
    """Pixel-to-prototype KL, one labelled pixel at a time.

    For pixel p of image b in group g (b, or 0 for one group), over the
    classes present in g: ``q(p) = softmax_k(cos(f_p, P_gk) / tau)`` with the
    teacher's pixel and prototypes for q_t, the student's pixel and its own
    (or, with ``student_prototypes='teacher'``, the teacher's) prototypes for
    q_s;
    ``KL(q_t || q_s)``, mean over labelled pixels (None if there is none).
    """
    n, _, h, w = fs.shape
    kls = []
    for b in range(n):
        g = b if ps.shape[0] == n else 0
        classes = [k for k in range(ps.shape[1]) if present[g, k]]
        for i in range(h):
            for j in range(w):
                if int(labels[b, i, j]) == ignore_index:
                    continue
                q = []
                own = ps if student_prototypes == 'own' else pt
                for f, p in ((fs, own), (ft, pt)):
                    cos = torch.stack([
                        F.cosine_similarity(f[b, :, i, j], p[g, k], dim=0)
                        for k in classes
                    ])
                    q.append(torch.softmax(cos / tau, dim=0))
                q_s, q_t = q
                kls.append((q_t * (q_t.log() - q_s.log())).sum())
    return torch.stack(kls).mean() if kls else None


def loss_and_stats(preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                   num_classes: int, margin: float = 1.0,
                   ignore_index: int = IGNORE,
                   prototype_scope: str = 'image',
                   label_resize: str = 'nearest', normalize: bool = False,
                   distance: str = 'euclidean', negatives: str = 'all',
                   symmetric: bool = False, pull_weight: float = 0.0,
                   pull_type: str = 'squared',
                   pixel_weight: float = 0.0, pixel_tau: float = 0.1,
                   pixel_prototypes: str = 'own',
                   loss_weight: float = 1.0) -> Tuple[Tensor, Dict]:
    """The I2CKD loss and its diagnostics, options as in ``I2CKDLoss``.

    Args:
        preds_S (Tensor): Student feature (N, C, h, w); bilinearly resized
            (``align_corners=False``) to the teacher's size if it differs.
        preds_T (Tensor): Teacher feature (N, C, h', w').
        gt (Tensor): Labels (N, H, W).

    Returns:
        tuple[Tensor, dict]: the scalar loss (a zero with a gradient path
        when there is nothing to learn) and ``triplets``, ``active``
        (fraction of hinges > 0), ``d_pos`` (mean over present classes),
        ``d_neg`` (mean over the negatives used), ``pull`` as floats.
    """
    preds_T = preds_T.detach()
    size = tuple(preds_T.shape[-2:])
    if tuple(preds_S.shape[-2:]) != size:
        preds_S = F.interpolate(preds_S, size=size, mode='bilinear',
                                align_corners=False)
    labels = resize_labels(gt, size, num_classes, ignore_index, label_resize)
    ps, counts = prototypes(preds_S, labels, num_classes, ignore_index,
                            prototype_scope)
    pt, _ = prototypes(preds_T, labels, num_classes, ignore_index,
                       prototype_scope)
    present = counts > 0
    pixel = None
    if pixel_weight > 0:  # cosines: the prototypes' scale does not matter
        pixel = pixel_term(preds_S, preds_T, labels, ps, pt, present,
                           pixel_tau, ignore_index, pixel_prototypes)
    if normalize:
        ps = ps / ps.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        pt = pt / pt.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    loss, info = _term(ps, pt, present, margin, distance, negatives)
    zero = preds_S.sum() * 0.0
    loss = zero if loss is None else loss
    if symmetric:
        loss_t, _ = _term(pt, ps, present, margin, distance, negatives)
        loss = 0.5 * (loss + (zero if loss_t is None else loss_t))
    d_pos = [
        pair_distance(ps[g, k], pt[g, k], distance)
        for g in range(ps.shape[0]) for k in range(num_classes)
        if present[g, k]
    ]
    pull = zero
    if d_pos:
        pull = torch.stack(
            [d if pull_type == 'linear' else d**2 for d in d_pos]).mean()
    if pull_weight > 0:
        loss = loss + pull_weight * pull
    if pixel is not None:
        loss = loss + pixel_weight * pixel
    hinges = info['hinges']
    stats = dict(
        triplets=len(hinges),
        active=(sum(float(x.detach()) > 0 for x in hinges) / len(hinges)
                if hinges else 0.0),
        d_pos=float(torch.stack(d_pos).detach().mean()) if d_pos else 0.0,
        d_neg=(float(torch.stack(info['d_neg']).detach().mean())
               if hinges else 0.0),
        pull=float(pull.detach()) if pull_weight > 0 else 0.0)
    if pixel_weight > 0:
        stats['pixel'] = 0.0 if pixel is None else float(pixel.detach())
    return loss_weight * loss, stats


def loss(preds_S: Tensor, preds_T: Tensor, gt: Tensor, num_classes: int,
         **options) -> Tensor:
    """:func:`loss_and_stats` without the diagnostics."""
    return loss_and_stats(preds_S, preds_T, gt, num_classes, **options)[0]

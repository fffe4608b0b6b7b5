"""I2CKD: Intra- and Inter-Class Knowledge Distillation loss.

The loss as implemented, which parts are the paper's and which are our
reading of it: ``docs/method.md``.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from .inputs import (as_num_classes, bad_label_message, check_options,
                     prepare_inputs)
from .prototypes import class_means, raise_together, sum_over_ranks, world_size

# F.pairwise_distance's eps, so that the loss equals nn.TripletMarginLoss,
# and the norm clamp of F.cosine_similarity
_PAIRWISE_EPS, _COSINE_EPS = 1e-6, 1e-8


@MODELS.register_module()
class I2CKDLoss(nn.Module):
    """Intra- and inter-class knowledge distillation on class prototypes.

    From "I2CKD: Intra- and Inter-Class Knowledge Distillation for Semantic
    Segmentation", A. Karine, T. Napoleon, M. Jridi, arXiv 2403.18490. For
    every group g (an image, or the batch) and pair of classes ``k != j``
    present in it, with student and teacher prototypes ``Ps``, ``Pt`` (the
    mean feature of a class's pixels) and T such triplets::

        L = loss_weight / T * sum max(0, d(Ps_gk, Pt_gk) - d(Ps_gk, Pt_gj) + m)

    d: the Euclidean distance of :class:`torch.nn.TripletMarginLoss`. The
    options are the parts the paper leaves open; ``docs/method.md`` defines
    each, says which are ours and which variant to use (the configs':
    ``normalize=True, margin=0.2, pull_weight=1.0``).

    Ignored pixels never matter, even NaN/Inf. :meth:`compute` never waits
    for the device: absent classes take part with weight 0 in fixed (G, K)
    and (G, K, K) shapes, so ``torch.compile(loss.compute, fullgraph=True)``
    and CUDA graphs work. Bad input found on the device (label ids neither
    a class nor ``ignore_index``; NaN/Inf at a labelled pixel) gives the
    call a zero loss and is reported in its status: :meth:`forward` raises
    it at once (one wait) or, with ``defer_checks``, merges it into
    ``pending_status`` for a caller that reads it once per step
    (``I2CKDDistill``). Shape and dtype errors raise at the call.

    Args:
        num_classes (int, optional): K; may be set later
            (:meth:`set_num_classes`), but before the first call.
        loss_weight (float), margin (float): Defaults to 1.0, 1.0.
        ignore_index (int): Label id of ignored pixels. Defaults to 255.
        prototype_scope (str): ``'image'`` (default), ``'batch'`` or
            ``'global'`` (the batches of all DDP ranks, as one process on
            the global batch: value and DDP-averaged gradient).
        label_resize (str): ``'nearest'`` (default) or ``'mode'``.
        normalize (bool): L2-normalise the prototypes. Defaults to False.
        distance (str): ``'euclidean'`` (default) or ``'cosine'``.
        negatives (str): ``'all'`` (default) or ``'hardest'``.
        symmetric (bool): Add the teacher-anchored triplets. Default False.
        pull_weight (float), pull_type (str): Weight of the intra-class
            pull ``mean_k d(Ps_k, Pt_k)^2`` (``'squared'``, default) or
            ``mean_k d(Ps_k, Pt_k)`` (``'linear'``). Defaults to 0.
        pixel_weight (float), pixel_tau (float), pixel_prototypes (str):
            The pixel-to-prototype KL term (ours): weight (default 0),
            softmax temperature (0.1), the prototypes a student pixel is
            compared with (``'own'``, default, or ``'teacher'``).
        nonfinite (str): NaN/Inf at a labelled pixel: ``'raise'``
            (default) or ``'skip'`` (no error; logged as ``skipped``).

    Shapes:
        preds_S (N, C, h, w), bilinearly resized to preds_T (N, C, h', w');
        gt (N, H, W) integer, resized to (h', w'); output: a scalar.
    """

    STATUS_CLEAR = (0, 0, 0, 0)  # the status with nothing to report

    def __init__(self, num_classes: Optional[int] = None,
                 loss_weight: float = 1.0, margin: float = 1.0,
                 ignore_index: int = 255, prototype_scope: str = 'image',
                 label_resize: str = 'nearest', normalize: bool = False,
                 distance: str = 'euclidean', negatives: str = 'all',
                 symmetric: bool = False, pull_weight: float = 0.0,
                 pull_type: str = 'squared', pixel_weight: float = 0.0,
                 pixel_tau: float = 0.1, pixel_prototypes: str = 'own',
                 nonfinite: str = 'raise') -> None:
        super().__init__()
        check_options(options := dict(locals()))
        for name in options.keys() - {'self', '__class__', 'num_classes'}:
            setattr(self, name, options[name])
        self._num_classes = (None if num_classes is None else
                             as_num_classes(num_classes))
        # forward() merges each call's status here instead of reading it.
        # Not a buffer: DDP's broadcast_buffers would copy rank 0's.
        self.defer_checks = False
        self.pending_status: Optional[Tensor] = None
        self._last_shapes = None  # (shape, dtype) of preds_S and preds_T
        self._stats_in: Dict[str, Tensor] = {}  # detached, read lazily
        self._last_stats: Dict[str, Tensor] = {}

    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes K, or None until :meth:`set_num_classes`."""
        return self._num_classes

    @num_classes.setter
    def num_classes(self, value: int) -> None:
        self.set_num_classes(value)

    def set_num_classes(self, num_classes: int) -> None:
        """Set K (an integer >= 1), e.g. from the student's decode head.

        Raises:
            TypeError: Not an integer (bools included).
            ValueError: ``num_classes < 1``.
        """
        self._num_classes = as_num_classes(num_classes)

    # -------------------------------------------------------- prototypes
    def _prototypes(self, preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                    scope: str):
        """The one path to the class means, of :meth:`compute` and
        :meth:`prototypes`: the inputs of ``prepare_inputs`` (s, t, bins,
        bad) and their means (2, G, C, K) (student, teacher) and counts
        (G, K) (``class_means``)."""
        # 'global': a rank raising alone would leave the others waiting in
        # the all_reduce of the sums, so all ranks raise together
        together = scope == 'global' and world_size() > 1
        what = "I2CKDLoss(prototype_scope='global')"
        try:
            s, t, bins, bad = prepare_inputs(
                preds_S, preds_T, gt, self._num_classes, self.ignore_index,
                self.label_resize)
        except Exception as e:  # noqa: B902 (re-raised on every rank)
            if together:
                raise_together(e, None, what)
            raise
        if together:
            bad = raise_together(None, bad, what)  # every rank's bad ids
        means, counts = class_means([s, t], bins, self._num_classes, scope)
        return means, counts, s, t, bins, bad

    def prototypes(self, preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                   scope: Optional[str] = None
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        """Student and teacher (detached) class prototypes (G, K, C) as the
        loss computes them, zero for absent classes, and ``present`` (G, K)
        (G = N for ``'image'``, else 1), e.g. for ``PrototypeVisHook``;
        ``scope`` overrides ``prototype_scope``. Raises on bad label ids
        (one wait)."""
        scope = self.prototype_scope if scope is None else scope
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            means, counts, *_, bad = self._prototypes(preds_S, preds_T, gt,
                                                      scope)
        self.raise_for_status(torch.cat([bad, bad.new_zeros(2)]))
        ps, pt = means.transpose(2, 3).unbind(0)
        return ps, pt.detach(), counts > 0

    # -------------------------------------------------------------- loss
    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt: Tensor) -> Tensor:
        """:meth:`compute`; its status is raised at once (one wait), or
        merged into ``pending_status`` when ``defer_checks`` is set."""
        loss, status = self.compute(preds_S, preds_T, gt)
        if not self.defer_checks:
            self.raise_for_status(status)
        elif self.pending_status is None:
            self.pending_status = status
        else:
            self.pending_status = torch.maximum(
                self.pending_status.to(status.device), status)
        return loss

    def compute(self, preds_S: Tensor, preds_T: Tensor,
                gt: Tensor) -> Tuple[Tensor, Tensor]:
        """The loss and the status of this call, without a wait.

        Args:
            preds_S (Tensor): Student feature (N, C, h, w).
            preds_T (Tensor): Teacher feature (N, C, h', w').
            gt (Tensor): Labels (N, H, W), integer, with ``ignore_index``.

        Returns:
            tuple[Tensor, Tensor]: the scalar loss (float32; float64 for
            float64 input), zero with a zero gradient on NaN/Inf at a
            labelled pixel; the status (4,) int64: the bad label ids of
            ``label_bins``, then 1 if the student / teacher prototypes were
            non-finite (else 0). Statuses merge with ``torch.maximum``.
        """
        # fp16/bf16 features under autocast: prototypes and triplets in fp32
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            means, counts, s, t, bins, bad = self._prototypes(
                preds_S, preds_T, gt, self.prototype_scope)
            # NaN/Inf at a labelled pixel makes its class's mean non-finite
            # ('global': on every rank). Such a step counts no class.
            finite = torch.isfinite(means.sum((1, 2, 3)))  # student, teacher
            ok = finite.all()
            means = torch.where(ok, means, 0.0)
            w = counts.clamp(max=1) * ok  # (G, K): 1 for a present class
            loss, self._stats_in = self._triplet_loss(means, w)
            if self.pixel_weight > 0:
                pixel = self._pixel_term(s, t, bins, means, w, ok)
                loss = torch.add(loss, pixel, alpha=self.pixel_weight)
                self._stats_in['pixel'] = pixel.detach()
            if self.nonfinite == 'skip':
                self._stats_in['skipped'] = ~ok
        self._last_shapes = ((tuple(preds_S.shape), preds_S.dtype),
                             (tuple(preds_T.shape), preds_T.dtype))
        return (loss if self.loss_weight == 1 else self.loss_weight * loss,
                torch.cat([bad, ~finite]))

    def _triplet_loss(self, means: Tensor, w: Tensor):
        """Triplet (+ pull) loss of prototypes (2, G, C, K) with class
        weights ``w`` (G, K), and what the diagnostics read (detached)."""
        ps, pt = means.transpose(2, 3).unbind(0)  # (G, K, C) each
        pt = pt.detach()  # no backward of the distances towards it
        if self.normalize:
            ps, pt = F.normalize(ps, dim=2), F.normalize(pt, dim=2)
        dist = self._pairwise(ps, pt)  # [g, k, j] = d(Ps_gk, Pt_gj)
        hinge, weight = self._hinges(dist, w)
        loss = hinge.sum() / weight.sum().clamp(min=1)
        parts = dict(dist=dist.detach(), hinge=hinge.detach(), weight=weight,
                     w=w)
        if self.symmetric:
            dist_t = (self._pairwise(pt, ps) if self.distance == 'euclidean'
                      else dist.transpose(1, 2))
            hinge, weight = self._hinges(dist_t, w)
            loss = 0.5 * (loss + hinge.sum() / weight.sum().clamp(min=1))
        if self.pull_weight > 0:  # mean same-class distance (or square)
            d = dist.diagonal(dim1=1, dim2=2)
            d = d if self.pull_type == 'linear' else d * d
            pull = (w * d).sum() / w.sum().clamp(min=1)
            loss = torch.add(loss, pull, alpha=self.pull_weight)
            parts['pull'] = pull.detach()
        return loss, parts

    def _pairwise(self, anchors: Tensor, others: Tensor) -> Tensor:
        """Distances (G, K, K) between the rows of (G, K, C) prototypes."""
        if self.distance == 'euclidean':
            # ||a - b + eps|| as F.pairwise_distance; not the matmul form,
            # which loses the small same-class distances
            return torch.cdist(anchors + _PAIRWISE_EPS, others,
                               compute_mode='donot_use_mm_for_euclid_dist')
        a, b = (F.normalize(x, dim=-1, eps=_COSINE_EPS)
                for x in (anchors, others))
        return 1.0 - torch.bmm(a, b.transpose(1, 2))

    def _hinges(self, dist: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
        """Hinges of the triplets of the present classes and their 0/1
        weights: (G, K, K) over all (anchor k, negative j != k), or (G, K)
        for the hardest negative of each anchor."""
        pair = w.unsqueeze(2) * w.unsqueeze(1) - torch.diag_embed(w)
        d_pos = dist.diagonal(dim1=1, dim2=2).unsqueeze(2)
        hinge = F.relu(d_pos - dist + self.margin) * pair
        if self.negatives == 'hardest':  # max_j relu(x - d_j) = relu(x - min)
            return hinge.amax(2), pair.amax(2)
        return hinge, pair

    def _pixel_term(self, s: Tensor, t: Tensor, bins: Tensor, means: Tensor,
                    w: Tensor, ok: Tensor) -> Tensor:
        """KL(q_t || q_s) of the softmaxes over present classes of
        ``cos(pixel, prototype) / pixel_tau``, mean over labelled pixels
        (features (N, C, hw), each pixel against its group's prototypes)."""
        valid = ((bins < w.shape[1]) & ok).unsqueeze(1)  # (N, 1, hw)
        # ignored pixels zeroed first: NaN/Inf there must reach no softmax
        fs, ft = (F.normalize(torch.where(valid, x, 0.0), dim=1)
                  for x in (s, t))
        ps, pt = F.normalize(means, dim=2).unbind(0)  # (G, C, K)
        absent = (w == 0).unsqueeze(-1)  # (G, K, 1)
        logq = [  # a group with no class: a uniform softmax, not NaN
            (torch.bmm(p.transpose(1, 2).expand(s.shape[0], -1, -1), f) /
             self.pixel_tau).masked_fill(absent, -1e4).log_softmax(dim=1)
            for f, p in ((fs, pt if self.pixel_prototypes == 'teacher'
                          else ps), (ft, pt))]
        kl = torch.where(absent, 0.0, logq[1].exp() * (logq[1] - logq[0]))
        total = torch.where(valid, kl, 0.0).sum()
        count = valid.sum().to(total.dtype)
        if self.prototype_scope == 'global':  # the same mean on every rank
            total, count = sum_over_ranks(total, count)
        return total / count.clamp(min=1)

    # ----------------------------------------------------- status, stats
    def raise_for_status(self, status) -> bool:
        """Raise what a status of :meth:`compute` (or several merged with
        ``torch.maximum``, also across ranks) reports; reading a tensor is
        one wait. Returns whether it reports NaN/Inf at a labelled pixel.

        Raises:
            ValueError: Bad label ids (the smallest and the largest); a
                NaN/Inf in the same status is named in the message too.
            FloatingPointError: NaN/Inf and ``nonfinite='raise'``.
        """
        neg_lo, hi, bad_s, bad_t = (int(v) for v in (
            status.tolist() if isinstance(status, Tensor) else status))
        text = ''
        if self.nonfinite == 'raise' and (bad_s or bad_t):
            name, (shape, dtype) = (
                ('preds_S (student feature)', self._last_shapes[0]) if bad_s
                else ('preds_T (teacher feature)', self._last_shapes[1]))
            text = (f'I2CKDLoss: {name} contains NaN or Inf at a labelled '
                    f'pixel (shape {shape}, dtype {dtype}); set '
                    'nonfinite="skip" to skip such steps instead')
        ids = [i for i in (-neg_lo, hi) if i]
        if ids:
            raise ValueError(
                bad_label_message(ids, self._num_classes, self.ignore_index)
                + (f'. Also: {text}' if text else ''))
        if text:
            raise FloatingPointError(text)
        return bool(bad_s or bad_t)

    def take_status(self) -> Optional[Tensor]:
        """``pending_status`` (None if no deferred call), cleared."""
        status, self.pending_status = self.pending_status, None
        return status

    @property
    def last_stats(self) -> Dict[str, Tensor]:
        """Diagnostics of the last call (float32): ``active`` (fraction of
        triplets with a positive hinge), ``d_pos`` / ``d_neg`` (mean
        same-class / negative distance), ``triplets``, ``pull``, and
        ``pixel`` / ``skipped`` with those options. Computed when first
        read after a call, from detached tensors."""
        if self._stats_in:
            self._last_stats = self._stats(**self._stats_in)
            self._stats_in = {}
        return self._last_stats

    @torch.no_grad()
    def _stats(self, dist: Tensor, hinge: Tensor, weight: Tensor, w: Tensor,
               pull: Optional[Tensor] = None, pixel: Optional[Tensor] = None,
               skipped: Optional[Tensor] = None) -> Dict[str, Tensor]:
        n = weight.sum()  # triplets
        if self.negatives == 'all':
            d_neg = (weight * dist).sum()
        else:  # the hardest negative of each anchor
            pair = w.unsqueeze(2) * w.unsqueeze(1) - torch.diag_embed(w)
            d_neg = torch.where(weight > 0, dist.masked_fill(
                pair == 0, float('inf')).amin(2), 0.0).sum()
        d_pos = (w * dist.diagonal(dim1=1, dim2=2)).sum()
        stats = dict(active=(hinge > 0).sum() / n.clamp(min=1),
                     d_pos=d_pos / w.sum().clamp(min=1),
                     d_neg=d_neg / n.clamp(min=1), triplets=n,
                     pull=n.new_zeros(()) if pull is None else pull)
        stats.update((k, v) for k, v in (('pixel', pixel),
                                         ('skipped', skipped)) if v is not None)
        return {key: v if v.dtype == torch.float32 else v.float()
                for key, v in stats.items()}

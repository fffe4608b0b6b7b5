"""I2CKD: Intra- and Inter-Class Knowledge Distillation loss.

The loss as implemented, which parts are the paper's and which are our
reading of it: ``docs/method.md``.
"""
import operator
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmrazor.registry import MODELS
from torch import Tensor

from .prototypes import (LABEL_RESIZE_MODES, PROTOTYPE_SCOPES, accum_dtype,
                         check_labels, class_prototypes_many, labelled,
                         raise_together, resize_labels, world_size)

DISTANCES = ('euclidean', 'cosine')
NEGATIVES = ('all', 'hardest')
PULL_TYPES = ('squared', 'linear')
PIXEL_PROTOTYPES = ('own', 'teacher')
NONFINITE = ('raise', 'skip')

# torch.nn.functional.pairwise_distance adds eps to the difference; we use
# the same constant so the loss matches torch.nn.TripletMarginLoss exactly.
_PAIRWISE_EPS = 1e-6


def _distance(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """Distance over the last dim with broadcasting, ``(..., C) -> (...)``."""
    if kind == 'euclidean':
        return (a - b + _PAIRWISE_EPS).norm(p=2, dim=-1)
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


@MODELS.register_module()
class I2CKDLoss(nn.Module):
    """Intra- and inter-class knowledge distillation on class prototypes.

    From "I2CKD: Intra- and Inter-Class Knowledge Distillation for Semantic
    Segmentation", A. Karine, T. Napoleon, M. Jridi, arXiv 2403.18490 (2024).

    For every image ``n`` and every pair of classes ``k != j`` present in its
    (resized) labels, with student prototypes ``Ps`` and teacher prototypes
    ``Pt`` (mean feature of a class's pixels)::

        L = loss_weight / T * sum max(0, d(Ps_nk, Pt_nk) - d(Ps_nk, Pt_nj) + m)

    where ``T`` is the number of such triplets in the batch and ``d`` the
    Euclidean distance of :class:`torch.nn.TripletMarginLoss`; the defaults
    compute this, our reading of the paper (its full text was not available
    to us: ``docs/method.md`` says which parts are the paper's and which are
    ours). The options below are the parts the paper leaves open;
    ``pull_weight > 0`` adds an explicit intra-class pull
    ``pull_weight * mean_k d(Ps_k, Pt_k)^2``. The shipped configs use
    ``normalize=True, margin=0.2, pull_weight=1.0``, which beat the literal
    defaults on one toy proxy and tied on the other; ``docs/method.md``
    ("Which variant to use") has the evidence.

    Ignored pixels (``ignore_index`` after the label resize) never matter:
    their features, even NaN/Inf, reach no prototype. A NaN/Inf feature at a
    labelled pixel raises or skips the step (``nonfinite``).

    Args:
        num_classes (int, optional): Number of classes K; labels outside
            ``[0, K)`` other than ``ignore_index`` raise an error. May be
            left None and set later with :meth:`set_num_classes` (e.g. by
            the distillation algorithm, from the student's decode head);
            calling the loss while it is None raises.
        loss_weight (float): Weight of the whole term. Defaults to 1.0.
        margin (float): Triplet margin m. Defaults to 1.0.
        ignore_index (int): Label id of ignored pixels. Defaults to 255.
        prototype_scope (str): ``'image'`` (default: prototypes per image),
            ``'batch'`` (one set per batch) or ``'global'`` (per batch across
            all DDP ranks).
            Trade-off: ``'image'`` communicates nothing, but each rank
            averages over its own triplets, so DDP's averaged gradient
            weights ranks, not triplets, equally; ``'global'`` equals one
            process on the whole global batch (loss and DDP-averaged
            gradients, so results do not change with the GPU count at a
            fixed global batch) and averages more pixels per prototype, at
            the cost of two all_reduces per step, all ranks waiting for the
            slowest: a ``world_size`` int32 error flag (input checks run
            before any collective; if one rank's input is bad, every rank
            raises, naming the rank and the reason), then the student and
            teacher K x C sums with the K counts in one tensor. A NaN/Inf at
            a labelled pixel of one rank reaches every rank's prototypes
            through that sum, so all ranks raise or skip alike.
        label_resize (str): ``'nearest'`` (default) or ``'mode'``. Label
            ids are validated on the pixels the loss reads: the resized
            labels for ``'nearest'``, every pixel for ``'mode'``.
        normalize (bool): L2-normalise prototypes before distances.
            Defaults to False.
        distance (str): ``'euclidean'`` (default) or ``'cosine'``
            (``1 - cos``).
        negatives (str): ``'all'`` (default: every other present class) or
            ``'hardest'`` (the closest teacher prototype of another class).
        symmetric (bool): Also add the triplets with the teacher prototype as
            anchor (positive/negatives from the student); the two means are
            averaged. Defaults to False.
        pull_weight (float): Weight of the explicit intra-class pull term,
            averaged over present classes. Defaults to 0 (literal I2CKD).
        pull_type (str): ``'squared'`` (default) or ``'linear'`` distance in
            the pull term.
        pixel_weight (float): Weight of the pixel-to-prototype term (ours,
            not the paper's; ``docs/method.md``): for every labelled pixel,
            the KL divergence from the teacher's to the student's softmax
            over present classes of ``cos(pixel feature, own prototype) /
            pixel_tau``, averaged over labelled pixels. It carries the
            intra-class variation (how typical a pixel is of its class) and
            the inter-class relations of each pixel, not only of the class
            means. Defaults to 0 (off).
        pixel_tau (float): Temperature of the pixel-to-prototype softmax.
            Defaults to 0.1.
        pixel_prototypes (str): Which prototypes a student pixel is compared
            with: ``'own'`` (default: the student's, a relation) or
            ``'teacher'`` (the teacher's, which also aligns the student
            feature with the teacher's prototypes).
        nonfinite (str): ``'raise'`` (default) raises naming the tensor when a
            feature holds NaN/Inf; ``'skip'`` returns a zero loss for that
            step instead (e.g. for fp16 overflow steps under AMP).

    Shapes:
        - preds_S: (N, C, h, w) student feature (after the connector).
        - preds_T: (N, C, h', w') teacher feature; the student feature is
          bilinearly resized to (h', w') if the sizes differ.
        - gt: (N, H, W) int64 labels with ``ignore_index``; resized to
          (h', w').
        - output: scalar tensor.
    """

    def __init__(self,
                 num_classes: Optional[int] = None,
                 loss_weight: float = 1.0,
                 margin: float = 1.0,
                 ignore_index: int = 255,
                 prototype_scope: str = 'image',
                 label_resize: str = 'nearest',
                 normalize: bool = False,
                 distance: str = 'euclidean',
                 negatives: str = 'all',
                 symmetric: bool = False,
                 pull_weight: float = 0.0,
                 pull_type: str = 'squared',
                 pixel_weight: float = 0.0,
                 pixel_tau: float = 0.1,
                 pixel_prototypes: str = 'own',
                 nonfinite: str = 'raise') -> None:
        super().__init__()
        for name, value, allowed in (
            ('prototype_scope', prototype_scope, PROTOTYPE_SCOPES),
            ('label_resize', label_resize, LABEL_RESIZE_MODES),
            ('distance', distance, DISTANCES),
            ('negatives', negatives, NEGATIVES),
            ('pull_type', pull_type, PULL_TYPES),
            ('pixel_prototypes', pixel_prototypes, PIXEL_PROTOTYPES),
            ('nonfinite', nonfinite, NONFINITE),
        ):
            if value not in allowed:
                raise ValueError(
                    f'I2CKDLoss: {name} must be one of {allowed}, '
                    f'got {value!r}')
        if margin < 0 or pull_weight < 0 or pixel_weight < 0:
            raise ValueError('margin, pull_weight and pixel_weight must be '
                             f'>= 0, got {margin}, {pull_weight}, '
                             f'{pixel_weight}')
        if not pixel_tau > 0:
            raise ValueError(f'pixel_tau must be > 0, got {pixel_tau}')
        self._num_classes: Optional[int] = None
        if num_classes is not None:
            self.set_num_classes(num_classes)
        self.loss_weight = loss_weight
        self.margin = margin
        self.ignore_index = ignore_index
        self.prototype_scope = prototype_scope
        self.label_resize = label_resize
        self.normalize = normalize
        self.distance = distance
        self.negatives = negatives
        self.symmetric = symmetric
        self.pull_weight = pull_weight
        self.pull_type = pull_type
        self.pixel_weight = pixel_weight
        self.pixel_tau = pixel_tau
        self.pixel_prototypes = pixel_prototypes
        self.nonfinite = nonfinite
        #: Detached diagnostics of the last call (see :meth:`_stats`).
        self.last_stats: Dict[str, Tensor] = {}

    # ------------------------------------------------------------------
    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes K, or None until :meth:`set_num_classes`."""
        return self._num_classes

    @num_classes.setter
    def num_classes(self, value: int) -> None:
        self.set_num_classes(value)

    def set_num_classes(self, num_classes: int) -> None:
        """Set the number of classes K (validated: an integer >= 1).

        For an algorithm that knows K from the student's decode head when
        the config leaves ``num_classes`` out. Assigning
        ``loss.num_classes = K`` does the same.

        Raises:
            TypeError: ``num_classes`` is not an integer (bools included).
            ValueError: ``num_classes < 1``.
        """
        if isinstance(num_classes, bool):
            raise TypeError('I2CKDLoss: num_classes must be an integer, got '
                            f'{num_classes!r}')
        try:
            k = operator.index(num_classes)
        except TypeError:
            raise TypeError('I2CKDLoss: num_classes must be an integer, got '
                            f'{num_classes!r}') from None
        if k < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self._num_classes = k

    def _require_num_classes(self) -> int:
        if self._num_classes is None:
            raise ValueError(
                'I2CKDLoss: num_classes is not set. Pass num_classes=K in the '
                "loss config, or call loss.set_num_classes(K) (the student's "
                'decode_head.num_classes) before the first forward')
        return self._num_classes

    def _check_inputs(self, preds_S: Tensor, preds_T: Tensor,
                      gt: Tensor) -> None:
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
        if preds_S.shape[1] != preds_T.shape[1]:
            raise ValueError(
                f'I2CKDLoss: student feature has {preds_S.shape[1]} channels '
                f'but teacher feature has {preds_T.shape[1]}; add a connector '
                f'(e.g. I2CKDConnector(in_channels={preds_S.shape[1]}, '
                f'out_channels={preds_T.shape[1]})) to the student input')
        if not preds_S.shape[0] == preds_T.shape[0] == gt.shape[0]:
            raise ValueError(
                'I2CKDLoss: batch sizes differ: preds_S '
                f'{preds_S.shape[0]}, preds_T {preds_T.shape[0]}, gt '
                f'{gt.shape[0]}')
        (h, w), (lh, lw) = preds_T.shape[-2:], gt.shape[-2:]
        if min(h, w, lh, lw) < 1:
            raise ValueError('I2CKDLoss: empty spatial size: preds_T '
                             f'{tuple(preds_T.shape)}, gt {tuple(gt.shape)}')
        rh, rw = lh / h, lw / w
        if abs(rh - rw) > 0.1 * max(rh, rw):
            raise ValueError(
                f'I2CKDLoss: label size {lh}x{lw} does not match the feature '
                f'size {h}x{w} (scale {rh:.2f} vs {rw:.2f}): labels and '
                'features must cover the same image')
        if gt.dtype.is_floating_point or gt.dtype == torch.bool:
            raise TypeError('I2CKDLoss: gt must be an integer tensor, got '
                            f'dtype {gt.dtype}')
        if self.label_resize == 'mode':  # every pixel votes: check all
            check_labels(gt, self._num_classes, self.ignore_index)

    def _finite(self, ps: Tensor, pt: Tensor, preds_S: Tensor,
                preds_T: Tensor) -> bool:
        """Whether the features reached the prototypes without NaN/Inf.

        Checked on the (G, K, C) prototypes, not the (N, C, h, w) features:
        a NaN/Inf at a labelled pixel makes its class's prototype
        non-finite (with the one-hot matmul, every class's: NaN * 0 is NaN),
        one at an ignored pixel reaches none, and with 'global' scope the
        all-reduce spreads it, so all ranks decide alike. Both prototype
        sets are checked at once (one wait for a GPU); which one failed is
        looked up only then, for the message.
        """
        if bool(torch.isfinite(ps).all() & torch.isfinite(pt).all()):
            return True
        if self.nonfinite == 'raise':
            name, feats = (('preds_S (student feature)', preds_S)
                           if not bool(torch.isfinite(ps).all()) else
                           ('preds_T (teacher feature)', preds_T))
            raise FloatingPointError(
                f'I2CKDLoss: {name} contains NaN or Inf at a labelled pixel '
                f'(shape {tuple(feats.shape)}, dtype {feats.dtype}); set '
                'nonfinite="skip" to skip such steps instead')
        return False

    def _triplet_term(self, anchor: Tensor, pos: Tensor, neg: Tensor,
                      pair_mask: Tensor):
        """Mean hinge over valid triplets; anchors (G,K,C), mask (G,K,K)."""
        d_pos = _distance(anchor, pos, self.distance)  # (G, K)
        d_neg = _distance(anchor.unsqueeze(2), neg.unsqueeze(1),
                          self.distance)  # (G, K, K): anchor k, negative j
        if self.negatives == 'hardest':
            if d_neg.shape[2] == 0:
                # no class present at all: amin over an empty dim raises
                d_neg = d_pos
            else:
                d_neg = d_neg.masked_fill(~pair_mask,
                                          float('inf')).amin(dim=2)
            mask = pair_mask.any(dim=2)
            hinge = F.relu(d_pos - d_neg + self.margin)
        else:
            mask = pair_mask
            hinge = F.relu(d_pos.unsqueeze(2) - d_neg + self.margin)
        hinge = torch.where(mask, hinge, torch.zeros_like(hinge))
        n_trip = mask.sum()
        return hinge.sum() / n_trip.clamp(min=1), hinge, mask, d_pos, d_neg

    def _prepare(self, preds_S: Tensor, preds_T: Tensor,
                 gt: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Validated student/teacher features at the teacher's size in the
        accumulation dtype, and labels (N, h', w') at that size."""
        num_classes = self._require_num_classes()
        self._check_inputs(preds_S, preds_T, gt)
        dtype = accum_dtype(preds_S.dtype)
        s, t = preds_S.to(dtype), preds_T.detach().to(dtype)
        size = tuple(t.shape[-2:])
        if tuple(s.shape[-2:]) != size:
            s = F.interpolate(s, size=size, mode='bilinear',
                              align_corners=False)
        labels = resize_labels(gt, size, num_classes, self.ignore_index,
                               self.label_resize)
        if self.label_resize == 'nearest':
            # the pixels the loss uses: 1/64 of a full-size check
            check_labels(labels, num_classes, self.ignore_index)
        return s, t, labels

    def prototypes(self,
                   preds_S: Tensor,
                   preds_T: Tensor,
                   gt: Tensor,
                   scope: Optional[str] = None
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        """Student and teacher class prototypes, as the loss computes them.

        The one prototype path of the package: :meth:`forward` and the
        visualisation (``PrototypeVisHook``) both call it. Inputs are
        checked, the student feature is bilinearly resized to the teacher's
        size, the labels are resized to it (``label_resize``), and the
        per-class means are taken in the accumulation dtype (at least
        float32) with autocast off. The teacher feature is detached.

        With ``scope='global'`` and several ranks, the input checks run on
        every rank before any collective and all ranks raise together if
        one rank's input is bad (see ``prototype_scope``).

        Args:
            preds_S (Tensor): Student feature (N, C, h, w).
            preds_T (Tensor): Teacher feature (N, C, h', w').
            gt (Tensor): Labels (N, H, W), integer, with ``ignore_index``.
            scope (str, optional): Overrides ``prototype_scope`` (e.g.
                ``'batch'`` for one picture per batch). Defaults to None.

        Returns:
            tuple[Tensor, Tensor, Tensor]: student prototypes (G, K, C),
            teacher prototypes (G, K, C) (zero rows for absent classes;
            float32, or float64 for float64 input) and ``present`` (G, K)
            bool, with G = N for ``'image'`` and 1 otherwise. Student
            prototypes carry the gradient to ``preds_S``.
        """
        return self._prototypes(preds_S, preds_T, gt, scope)[:3]

    def _prototypes(self, preds_S: Tensor, preds_T: Tensor, gt: Tensor,
                    scope: Optional[str] = None):
        """:meth:`prototypes` plus the prepared student/teacher features
        (N, C, h', w') and labels (N, h', w') they were computed from."""
        scope = self.prototype_scope if scope is None else scope
        if scope not in PROTOTYPE_SCOPES:
            raise ValueError(f'I2CKDLoss: scope must be one of '
                             f'{PROTOTYPE_SCOPES}, got {scope!r}')
        together = scope == 'global' and world_size() > 1
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            error = None
            try:
                s, t, labels = self._prepare(preds_S, preds_T, gt)
            except Exception as e:  # noqa: B902 (re-raised on every rank)
                if not together:
                    raise
                error = e
            if together:
                raise_together(error,
                               "I2CKDLoss(prototype_scope='global')")
            (ps, pt), counts = class_prototypes_many(
                [s, t], labels, self._num_classes, self.ignore_index, scope)
        return ps, pt, counts > 0, s, t, labels

    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt: Tensor) -> Tensor:
        """Compute the I2CKD loss.

        Args:
            preds_S (Tensor): Student feature (N, C, h, w).
            preds_T (Tensor): Teacher feature (N, C, h', w').
            gt (Tensor): Labels (N, H, W), int64, with ``ignore_index``.

        Returns:
            Tensor: Scalar loss (float32, or float64 for float64 input),
            ``loss_weight`` applied.
        """
        ps, pt, present, s, t, labels = self._prototypes(preds_S, preds_T, gt)
        if not self._finite(ps, pt, preds_S, preds_T):
            self.last_stats = {
                'skipped': preds_S.new_ones((), dtype=torch.float32)
            }
            # Zero loss whose gradient is zero (not NaN) for every input.
            return preds_S.nan_to_num(0.0, 0.0, 0.0).float().sum() * 0.0
        # fp16/bf16 features under autocast: the triplets in fp32 too.
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            loss, stats = self._loss_from_prototypes(ps, pt, present)
            if self.pixel_weight > 0:
                pixel = self._pixel_term(s, t, labels, ps, pt, present)
                loss = loss + self.pixel_weight * pixel
                stats['pixel'] = pixel.detach().float()
        self.last_stats = stats
        return self.loss_weight * loss

    def _loss_from_prototypes(self, ps: Tensor, pt: Tensor, present: Tensor):
        """Triplet (+pull) loss from prototypes (G, K, C), present (G, K)."""
        # Keep only the classes present somewhere, so the (G, K', K', C)
        # pairwise tensor stays small even with 150 classes.
        # (one index for the three: boolean indexing waits for the device
        # once per tensor)
        keep = present.any(dim=0).nonzero().squeeze(1)
        ps, pt, present = (x.index_select(1, keep) for x in (ps, pt, present))
        if self.normalize:
            ps, pt = F.normalize(ps, dim=-1), F.normalize(pt, dim=-1)
        eye = torch.eye(present.shape[1], dtype=torch.bool,
                        device=present.device)
        pair_mask = present.unsqueeze(2) & present.unsqueeze(1) & ~eye
        loss, hinge, mask, d_pos, d_neg = self._triplet_term(
            ps, pt, pt, pair_mask)
        if self.symmetric:
            loss_t = self._triplet_term(pt, ps, ps, pair_mask)[0]
            loss = 0.5 * (loss + loss_t)
        pull = loss.new_zeros(())
        if self.pull_weight > 0:
            d = d_pos if self.pull_type == 'linear' else d_pos.pow(2)
            n_present = present.sum().clamp(min=1)
            pull = torch.where(present, d, torch.zeros_like(d)).sum() / n_present
            loss = loss + self.pull_weight * pull
        return loss, self._stats(hinge, mask, d_pos, d_neg, present, pull)

    def _pixel_term(self, s: Tensor, t: Tensor, labels: Tensor, ps: Tensor,
                    pt: Tensor, present: Tensor) -> Tensor:
        """Pixel-to-prototype KL, mean over labelled pixels (ours).

        ``s``/``t`` (N, C, h, w) features, ``labels`` (N, h, w), prototypes
        (G, K, C) with G = N (image scope) or 1, ``present`` (G, K). Each
        pixel is compared with the prototypes of its own group, over the
        classes present there: ``q = softmax_k(cos(f_p, P_k) / pixel_tau)``
        for the teacher (teacher pixel, teacher prototypes) and the student
        (student pixel, student or teacher prototypes: ``pixel_prototypes``);
        the term is KL(q_t || q_s).
        """
        if self.pixel_prototypes == 'teacher':
            ps = pt
        n, c = s.shape[:2]
        valid = labelled(labels.reshape(n, 1, -1), present.shape[1],
                         self.ignore_index)
        # Zero ignored pixels first: a NaN/Inf there must not reach the
        # softmax (its backward would spread NaN to the connector).
        zero = s.new_zeros(())
        fs = F.normalize(torch.where(valid, s.reshape(n, c, -1), zero), dim=1)
        ft = F.normalize(torch.where(valid, t.reshape(n, c, -1), zero), dim=1)
        absent = ~present.unsqueeze(-1)  # (G, K, 1)
        logq = []
        for f, p in ((fs, ps), (ft, pt)):
            p = F.normalize(p, dim=-1).expand(n, -1, -1)
            logits = torch.bmm(p, f) / self.pixel_tau  # (N, K, hw)
            logq.append(logits.masked_fill(absent, float('-inf'))
                        .log_softmax(dim=1))
        logq_s, logq_t = logq
        # absent classes: q_t = 0 and log q = -inf; 0 * (-inf) would be NaN
        kl = torch.where(absent, zero,
                         logq_t.exp() * (logq_t - logq_s)).sum(dim=1)
        valid = valid.squeeze(1)
        n_valid = valid.sum()
        return torch.where(valid, kl, zero).sum() / n_valid.clamp(min=1)

    @torch.no_grad()
    def _stats(self, hinge, mask, d_pos, d_neg, present, pull):
        """Diagnostics: active-triplet fraction and mean distances."""
        n_trip = mask.sum().clamp(min=1).float()
        anchor_mask = mask if self.negatives == 'hardest' else mask.any(2)
        neg_mask = mask if self.negatives == 'all' else anchor_mask
        d_neg = torch.where(neg_mask, d_neg, torch.zeros_like(d_neg))
        return {
            'active': ((hinge > 0) & mask).sum().float() / n_trip,
            'd_pos': torch.where(present, d_pos,
                                 torch.zeros_like(d_pos)).sum() /
            present.sum().clamp(min=1).float(),
            'd_neg': d_neg.sum() / neg_mask.sum().clamp(min=1).float(),
            'triplets': mask.sum().float(),
            'pull': pull.detach().float(),
        }

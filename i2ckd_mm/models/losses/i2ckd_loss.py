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
                         bad_ids, bad_label_message, class_counts,
                         class_sums, label_bins, raise_together,
                         reduce_scope, resize_labels, world_size)

DISTANCES = ('euclidean', 'cosine')
NEGATIVES = ('all', 'hardest')
PULL_TYPES = ('squared', 'linear')
PIXEL_PROTOTYPES = ('own', 'teacher')
NONFINITE = ('raise', 'skip')

# torch.nn.functional.pairwise_distance adds eps to the difference; we use
# the same constant so the loss matches torch.nn.TripletMarginLoss exactly.
_PAIRWISE_EPS = 1e-6
# and the norm clamp of torch.nn.functional.cosine_similarity
_COSINE_EPS = 1e-8


class _L2Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=dim, eps=eps)`` (same values), with a backward
    of 6 operators instead of autograd's 14 for norm, clamp and division:
    ``dx = (g - y <y, g>) / max(|x|, eps)``, where the projection term is
    dropped for a clamped norm (there ``y = x / eps`` is linear in x)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, eps: float) -> Tensor:
        norm = x.norm(dim=dim, keepdim=True).clamp_min(eps)
        y = x / norm
        ctx.dim, ctx.eps = dim, eps
        ctx.save_for_backward(y, norm)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        y, norm = ctx.saved_tensors
        dot = (y * grad).sum(ctx.dim, keepdim=True) * (norm > ctx.eps)
        return torch.addcmul(grad, y, dot, value=-1) / norm, None, None


def l2_normalize(x: Tensor, dim: int, eps: float = 1e-12) -> Tensor:
    """``F.normalize(x, dim=dim, eps=eps)`` with a cheaper backward."""
    return _L2Normalize.apply(x, dim, eps)


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

    :meth:`compute` never waits for the device (no ``.item()``,
    ``nonzero``, boolean indexing or branch on a tensor's value): absent
    classes take part with weight 0 in fixed (G, K) and (G, K, K) shapes,
    so the shapes depend only on N, C, K and the feature size, and
    ``torch.compile(loss.compute, fullgraph=True)`` and CUDA-graph capture
    work. Bad input found on the device (label ids that are neither a class
    nor ``ignore_index``; NaN/Inf at a labelled pixel) is returned as a
    small status tensor of that call, read by :meth:`raise_for_status`;
    the call itself contributes a zero loss (bad ids count as ignored).
    Called as a module, the loss reads that status at once (one wait) and
    raises at the call that had the bad input, unless ``defer_checks`` is
    set (``I2CKDDistill`` does), in which case the status is merged into
    ``pending_status`` for the caller to read once per step
    (:meth:`take_status`). Shape and dtype errors always raise at the call.

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
        nonfinite (str): ``'raise'`` (default): a step whose feature holds
            NaN/Inf at a labelled pixel gives a zero loss and zero gradient,
            and :meth:`raise_for_status` raises naming the tensor;
            ``'skip'``: the same zero loss without the error (e.g. for fp16
            overflow steps under AMP), logged as ``skipped``.

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
        # forward() merges each call's status here instead of reading it
        # (set by I2CKDDistill, which reads it once per step). A plain
        # attribute, not a buffer: DDP with broadcast_buffers=True would
        # overwrite every rank's status with rank 0's.
        self.defer_checks = False
        self.pending_status: Optional[Tensor] = None
        self._last_shapes = None  # (shape, dtype) of preds_S and preds_T
        # inputs of the diagnostics of the last call, computed when read
        self._stats_in: Dict[str, Tensor] = {}
        self._last_stats: Dict[str, Tensor] = {}

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

    # ------------------------------------------------------------ checks
    def raise_for_status(self, status) -> bool:
        """Raise the error a call's status reports (reading it: one wait).

        Args:
            status (Tensor | Sequence[int]): The status of :meth:`compute`,
                or several merged with ``torch.maximum`` (also across ranks
                with an all_reduce MAX), as a tensor or host ints.

        Returns:
            bool: True if the status reports NaN/Inf at a labelled pixel
            (a step whose loss was zero; with ``nonfinite='skip'`` the
            caller may skip it), else False.

        Raises:
            ValueError: Label ids that are neither a class nor the ignore
                index (the smallest and largest such ids); a NaN/Inf in the
                same status is named in the same message.
            FloatingPointError: NaN/Inf at a labelled pixel and
                ``nonfinite='raise'``.
        """
        if isinstance(status, Tensor):
            status = status.tolist()
        neg_lo, hi, bad_s, bad_t = (int(v) for v in status)
        nonfinite = ''
        if self.nonfinite == 'raise' and (bad_s or bad_t):
            name, (shape, dtype) = (
                ('preds_S (student feature)', self._last_shapes[0]) if bad_s
                else ('preds_T (teacher feature)', self._last_shapes[1]))
            nonfinite = (
                f'I2CKDLoss: {name} contains NaN or Inf at a labelled pixel '
                f'(shape {shape}, dtype {dtype}); set nonfinite="skip" to '
                'skip such steps instead')
        ids = bad_ids((-neg_lo, hi))
        if ids:
            raise ValueError(
                bad_label_message(ids, self._num_classes, self.ignore_index)
                + (f'. Also: {nonfinite}' if nonfinite else ''))
        if nonfinite:
            raise FloatingPointError(nonfinite)
        return bool(bad_s or bad_t)

    def take_status(self) -> Optional[Tensor]:
        """The merged status of the deferred calls (``defer_checks``) since
        the last take, or None if there was none; clears it."""
        status, self.pending_status = self.pending_status, None
        return status

    def _raise_bad_labels(self, extremes) -> None:
        """Raise if the label extremes (host ints, :func:`label_bins`) name
        bad ids: the one text of every label check."""
        ids = bad_ids(extremes)
        if ids:
            raise ValueError(
                bad_label_message(ids, self._num_classes, self.ignore_index))

    # -------------------------------------------------------- prototypes
    def _prepare(self, preds_S: Tensor, preds_T: Tensor, gt: Tensor):
        """Validated features at the teacher's size in the accumulation
        dtype, flattened (N, C, h'w'), the teacher's detached; labels
        (N, h', w') at that size; the label extremes (:func:`label_bins`)."""
        num_classes = self._require_num_classes()
        self._check_inputs(preds_S, preds_T, gt)
        dtype = accum_dtype(preds_S.dtype)
        s = preds_S if preds_S.dtype == dtype else preds_S.to(dtype)
        t = preds_T.detach() if preds_T.requires_grad else preds_T
        t = t if t.dtype == dtype else t.to(dtype)
        size = tuple(t.shape[-2:])
        if tuple(s.shape[-2:]) != size:
            s = F.interpolate(s, size=size, mode='bilinear',
                              align_corners=False)
        labels = resize_labels(gt, size, num_classes, self.ignore_index,
                               self.label_resize)
        # Validated on the pixels the loss reads: the resized labels for
        # 'nearest' (1/64 of a full-size check), every pixel for 'mode'
        # (every pixel votes).
        bins, extremes = label_bins(labels, num_classes, self.ignore_index)
        if self.label_resize == 'mode':
            extremes = label_bins(gt, num_classes, self.ignore_index)[1]
        return s.flatten(2), t.flatten(2), bins, extremes

    def _sums(self, preds_S: Tensor, preds_T: Tensor, gt: Tensor,
              scope: str):
        """Class sums (2, G, C, K) of student and teacher, counts (G, K),
        the prepared features (N, C, hw), bins (N, hw) and label extremes."""
        if scope not in PROTOTYPE_SCOPES:
            raise ValueError(f'I2CKDLoss: scope must be one of '
                             f'{PROTOTYPE_SCOPES}, got {scope!r}')
        together = scope == 'global' and world_size() > 1
        error = None
        try:
            s, t, bins, extremes = self._prepare(preds_S, preds_T, gt)
            if together:
                # A rank that raised alone would leave the others in the
                # all_reduce: its checks run now, on every rank, and all
                # ranks raise together (one wait; 'global' only).
                self._raise_bad_labels(torch.stack(extremes).tolist())
        except Exception as e:  # noqa: B902 (re-raised on every rank)
            if not together:
                raise
            error = e
        if together:
            raise_together(error, "I2CKDLoss(prototype_scope='global')")
        bins = bins.flatten(1)
        (sums, ), counts = reduce_scope(
            [class_sums([s, t], bins, self._num_classes)],
            class_counts(bins, self._num_classes, s), scope)
        return sums, counts, s, t, bins, extremes

    def prototypes(self,
                   preds_S: Tensor,
                   preds_T: Tensor,
                   gt: Tensor,
                   scope: Optional[str] = None
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        """Student and teacher class prototypes, as the loss computes them.

        The one prototype path of the package: :meth:`forward` and the
        visualisation (``PrototypeVisHook``) both use :meth:`_sums`. Inputs
        are checked, the student feature is bilinearly resized to the
        teacher's size, the labels are resized to it (``label_resize``),
        and the per-class means are taken in the accumulation dtype (at
        least float32) with autocast off. The teacher feature is detached.
        Unlike :meth:`forward`, this method checks the labels at once (one
        wait) and raises on bad ids.

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
        scope = self.prototype_scope if scope is None else scope
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            sums, counts, _, _, _, extremes = self._sums(
                preds_S, preds_T, gt, scope)
            self._raise_bad_labels(torch.stack(extremes).tolist())
            ps, pt = (sums / counts.clamp(min=1).unsqueeze(1)).transpose(
                2, 3).unbind(0)
        return ps, pt.detach(), counts > 0

    # ------------------------------------------------------------- loss
    STATUS_CLEAR = (0, 0, 0, 0)  # the status with nothing to report

    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt: Tensor) -> Tensor:
        """:meth:`compute`, then its status: raised at once (one wait), or
        merged into ``pending_status`` if ``defer_checks`` is set.

        Returns:
            Tensor: The loss of :meth:`compute`.
        """
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
        """Compute the I2CKD loss and the status of this call, no wait.

        Args:
            preds_S (Tensor): Student feature (N, C, h, w).
            preds_T (Tensor): Teacher feature (N, C, h', w').
            gt (Tensor): Labels (N, H, W), int64, with ``ignore_index``.

        Returns:
            tuple[Tensor, Tensor]: Scalar loss (float32, or float64 for
            float64 input), ``loss_weight`` applied; zero, with a zero
            gradient, for a step whose features hold NaN/Inf at a labelled
            pixel. The status (4,) int64 on the labels' device: minus the
            smallest and the largest bad label id (0 if none), and 1 where
            the student / teacher prototypes were non-finite (else 0);
            :attr:`STATUS_CLEAR` when all is well. Every entry grows with
            what is wrong, so statuses merge with ``torch.maximum``.
        """
        # fp16/bf16 features under autocast: prototypes and triplets in fp32
        with torch.autocast(device_type=preds_S.device.type, enabled=False):
            sums, counts, s, t, bins, extremes = self._sums(
                preds_S, preds_T, gt, self.prototype_scope)
            # Normalised prototypes do not need the division by the counts:
            # normalize(sum) = normalize(mean) for a present class.
            means = sums if self.normalize else \
                sums / counts.clamp(min=1).unsqueeze(1)
            # NaN/Inf at a labelled pixel makes its class's mean non-finite
            # (one at an ignored pixel reaches none; with 'global' scope the
            # all_reduce spreads it, so all ranks decide alike). Such a step
            # counts no class and no prototype: zero loss, zero gradient.
            finite = torch.isfinite(means.sum((1, 2, 3)))  # student, teacher
            ok = finite.all()
            means = torch.where(ok, means, 0.0)
            weights = counts.clamp(max=1) * ok  # (G, K): present classes
            loss = self._loss_from_prototypes(means, weights)
            if self.pixel_weight > 0:
                pixel = self._pixel_term(s, t, bins, means, weights, ok)
                loss = torch.add(loss, pixel, alpha=self.pixel_weight)
                self._stats_in['pixel'] = pixel
            if self.nonfinite == 'skip':
                self._stats_in['skipped'] = ~ok
        lo, hi = extremes
        status = torch.cat([torch.stack([-lo, hi]), ~finite])  # int64
        self._last_shapes = ((tuple(preds_S.shape), preds_S.dtype),
                             (tuple(preds_T.shape), preds_T.dtype))
        # (a weight of 1, the default, costs no operator)
        return (loss if self.loss_weight == 1 else self.loss_weight * loss,
                status)

    def _pairwise(self, anchors: Tensor, others: Tensor) -> Tensor:
        """Distances (G, K, K) from each anchor row to each other row of
        (G, K, C) prototypes; ``[g, k, j] = d(anchors_k, others_j)``."""
        if self.distance == 'euclidean':
            # the eps of pairwise_distance: ||a - b + eps|| = ||(a+eps) - b||;
            # no matmul form, which loses the small same-class distances
            return torch.cdist(anchors + _PAIRWISE_EPS, others,
                               compute_mode='donot_use_mm_for_euclid_dist')
        # F.cosine_similarity: each vector over max(norm, 1e-8)
        a, b = (l2_normalize(x, -1, _COSINE_EPS) for x in (anchors, others))
        return 1.0 - torch.bmm(a, b.transpose(1, 2))

    def _loss_from_prototypes(self, means: Tensor, w: Tensor) -> Tensor:
        """Triplet (+pull) loss from prototypes (2, G, C, K) and class
        weights ``w`` (G, K), 1 for a present class, else 0."""
        if self.normalize:
            means = l2_normalize(means, 2)
        ps, pt = means.transpose(2, 3).unbind(0)  # (G, K, C) each
        # the stacked sums carry the student's gradient; the teacher's half
        # needs none (no backward of the distances towards it)
        pt = pt.detach()
        dist = self._pairwise(ps, pt)  # anchor k (student), teacher j
        d_pos = dist.diagonal(dim1=1, dim2=2)  # (G, K)
        loss, stats = self._triplets(dist, d_pos, w)
        if self.symmetric:
            dist_t = (self._pairwise(pt, ps) if self.distance == 'euclidean'
                      else dist.transpose(1, 2))
            loss = 0.5 * (loss + self._triplets(
                dist_t, dist_t.diagonal(dim1=1, dim2=2), w)[0])
        n_present = w.sum()
        if self.pull_weight > 0:
            d = d_pos if self.pull_type == 'linear' else d_pos * d_pos
            pull = (w * d).sum() / n_present.clamp(min=1)
            loss = torch.add(loss, pull, alpha=self.pull_weight)
        else:
            pull = None
        # kept as they are (no detach op per call): _stats reads them
        # under no_grad when the diagnostics are read
        self._stats_in = dict(stats, d_pos=d_pos, w=w, pull=pull)
        return loss

    def _triplets(self, dist: Tensor, d_pos: Tensor, w: Tensor):
        """Mean hinge over the triplets (anchor k, negative j != k) of the
        classes present in a group; ``dist`` (G, K, K), ``d_pos`` (G, K)
        its diagonal, ``w`` (G, K) 0/1. Shapes never depend on which
        classes are present: absent ones take part with weight 0."""
        if self.negatives == 'hardest':
            pair = (w.unsqueeze(2) * w.unsqueeze(1)).bool() & ~torch.eye(
                w.shape[1], dtype=torch.bool, device=w.device)
            d_neg = dist.masked_fill(~pair, float('inf')).amin(dim=2)
            # an anchor without a negative has d_neg = inf: hinge 0
            hinge = F.relu(d_pos - d_neg + self.margin)
            anchors = pair.any(dim=2).to(w.dtype)
            n_trip = anchors.sum()
            loss = (anchors * hinge).sum() / n_trip.clamp(min=1)
            return loss, dict(hinge=hinge, mask=anchors, pair=None,
                              d_neg=d_neg, n_trip=n_trip)
        # every (k, j) pair of present classes, k != j, as 0/1 weights on
        # the full K x K grid (no selection of the present classes)
        hinge = F.relu(d_pos.unsqueeze(2) - dist + self.margin)
        pair = w.unsqueeze(2) * w.unsqueeze(1) - torch.diag_embed(w)
        n_trip = pair.sum()
        loss = (pair * hinge).sum() / n_trip.clamp(min=1)
        return loss, dict(hinge=hinge, mask=None, pair=pair, d_neg=dist,
                          n_trip=n_trip)

    def _pixel_term(self, s: Tensor, t: Tensor, bins: Tensor, means: Tensor,
                    w: Tensor, ok: Tensor) -> Tensor:
        """Pixel-to-prototype KL, mean over labelled pixels (ours).

        ``s``/``t`` (N, C, hw) features, ``bins`` (N, hw), prototypes
        ``means`` (2, G, C, K) with G = N (image scope) or 1, ``w`` (G, K)
        the present classes. Each pixel is compared with the prototypes of
        its own group, over the classes present there:
        ``q = softmax_k(cos(f_p, P_k) / pixel_tau)`` for the teacher
        (teacher pixel, teacher prototypes) and the student (student pixel,
        student or teacher prototypes: ``pixel_prototypes``); the term is
        KL(q_t || q_s).
        """
        n = s.shape[0]
        num_classes = w.shape[1]
        valid = ((bins < num_classes) & ok).unsqueeze(1)  # (N, 1, hw)
        # Zero ignored pixels first: a NaN/Inf there must not reach the
        # softmax (its backward would spread NaN to the connector).
        fs = l2_normalize(torch.where(valid, s, 0.0), 1)
        ft = l2_normalize(torch.where(valid, t, 0.0), 1)
        ps, pt = l2_normalize(means, 2).unbind(0)  # (G, C, K)
        if self.pixel_prototypes == 'teacher':
            ps = pt
        absent = (w == 0).unsqueeze(-1)  # (G, K, 1)
        logq = []
        for f, p in ((fs, ps), (ft, pt)):
            logits = torch.bmm(p.transpose(1, 2).expand(n, -1, -1),
                               f) / self.pixel_tau  # (N, K, hw)
            # a finite fill: a group with no class (all ignored, or a
            # skipped step) gets a uniform softmax, not NaN; exp(-1e4) is 0
            logq.append(logits.masked_fill(absent, -1e4).log_softmax(dim=1))
        logq_s, logq_t = logq
        kl = torch.where(absent, 0.0,
                         logq_t.exp() * (logq_t - logq_s)).sum(dim=1)
        valid = valid.squeeze(1)
        return (torch.where(valid, kl, 0.0).sum() /
                valid.sum().clamp(min=1))

    # ------------------------------------------------------- diagnostics
    @property
    def last_stats(self) -> Dict[str, Tensor]:
        """Detached diagnostics of the last call: ``active`` (fraction of
        triplets with a positive hinge), ``d_pos`` / ``d_neg`` (mean
        same-class / other-class prototype distance), ``triplets``,
        ``pull``, and ``pixel`` / ``skipped`` where those options are on.
        Computed when first read after a call (a few small operations),
        so a call whose diagnostics nobody reads does not pay for them."""
        if self._stats_in:
            self._last_stats = self._stats(**self._stats_in)
            self._stats_in = {}
        return self._last_stats

    @last_stats.setter
    def last_stats(self, value: Dict[str, Tensor]) -> None:
        self._stats_in = {}
        self._last_stats = value

    @torch.no_grad()
    def _stats(self, hinge, mask, pair, d_neg, n_trip, d_pos, w, pull,
               pixel=None, skipped=None):
        denom = n_trip.clamp(min=1)
        n_present = w.sum()
        if mask is None:  # all negatives: the K x K pair weights
            active = (pair * (hinge > 0)).sum() / denom
            neg = (pair * d_neg).sum() / denom
        else:  # hardest: one triplet per anchor
            active = (mask * (hinge > 0)).sum() / denom
            neg = torch.where(mask > 0, d_neg, 0.0).sum() / denom
        stats = {
            'active': active.float(),
            'd_pos': ((w * d_pos).sum() / n_present.clamp(min=1)).float(),
            'd_neg': neg.float(),
            'triplets': n_trip.float(),
            'pull': (pull.detach().float() if pull is not None else
                     w.new_zeros((), dtype=torch.float32)),
        }
        if pixel is not None:
            stats['pixel'] = pixel.detach().float()
        if skipped is not None:
            stats['skipped'] = skipped.float()
        return stats

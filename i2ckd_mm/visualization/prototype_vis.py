"""Teacher-vs-student class prototypes: similarity matrix and 2-D PCA.

Used by :class:`i2ckd_mm.engine.hooks.PrototypeVisHook`. Plotting goes
through matplotlib's object API with an explicit Agg canvas, so it neither
needs a display nor changes pyplot's global backend.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..models.losses.i2ckd_loss import I2CKDLoss


@torch.no_grad()
def batch_prototypes(loss: I2CKDLoss, feat_s: Tensor, feat_t: Tensor,
                     labels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Student and teacher prototypes of one batch, as ``loss`` sees them.

    Calls :meth:`I2CKDLoss.prototypes` (the loss's own label resize,
    student resize, accumulation dtype, ``num_classes`` and
    ``ignore_index``) with ``scope='batch'``: per-class means over the
    *whole batch*, one K x K picture per batch. ('batch', not the loss's
    scope: the hook runs on the main process only, so a 'global' all_reduce
    would wait for ranks that never call it.)

    Args:
        loss (I2CKDLoss): The loss whose inputs are pictured.
        feat_s (Tensor): Student feature after the connector (N, C, h, w).
        feat_t (Tensor): Teacher feature (N, C, h', w').
        labels (Tensor): Labels (N, H, W), int, with the loss's
            ``ignore_index``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: student prototypes (K, C), teacher
        prototypes (K, C) (the loss's accumulation dtype, zero rows for
        absent classes) and the boolean ``present`` mask (K,).
    """
    ps, pt, present = loss.prototypes(feat_s.detach(), feat_t.detach(),
                                      labels, scope='batch')
    return ps[0], pt[0], present[0]


def prototype_similarity(ps: Tensor, pt: Tensor,
                         present: Tensor) -> np.ndarray:
    """Cosine similarity of every student prototype to every teacher one.

    Args:
        ps (Tensor): Student prototypes (K, C).
        pt (Tensor): Teacher prototypes (K, C).
        present (Tensor): Bool (K,), classes with pixels in the batch.

    Returns:
        np.ndarray: (K, K) float64, ``S[k, j] = cos(ps_k, pt_j)``; rows and
        columns of absent classes are NaN. A student that matches the teacher
        has a bright diagonal (intra-class pull) and a darker off-diagonal
        (inter-class push).
    """
    ps_n = F.normalize(ps.double(), dim=1)
    pt_n = F.normalize(pt.double(), dim=1)
    sim = (ps_n @ pt_n.T).cpu().numpy()
    absent = ~present.cpu().numpy()
    sim[absent, :] = np.nan
    sim[:, absent] = np.nan
    return sim


def pca_2d(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` (M, C) onto their first two principal axes.

    Returns:
        tuple[np.ndarray, np.ndarray]: coordinates (M, 2) and the fraction of
        variance each axis explains (2,) (zeros if ``x`` has no variance).
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((x.shape[0], 2))
    k = min(2, vt.shape[0])
    coords[:, :k] = centred @ vt[:k].T
    var = sv**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return coords, ratio


def _class_label(k: int, class_names: Optional[Sequence[str]]) -> str:
    return str(class_names[k]) if class_names and k < len(class_names) \
        else str(k)


def _colour(k: int):
    from matplotlib import colormaps
    cmap = colormaps['tab20']
    return cmap(k % 20)


def plot_similarity_matrix(sim: np.ndarray,
                           path: str,
                           class_names: Optional[Sequence[str]] = None,
                           title: str = '') -> None:
    """Save the present-class block of a (K, K) similarity matrix as PNG."""
    ids = np.flatnonzero(~np.isnan(np.diag(sim)))
    if ids.size == 0:
        raise ValueError('no class is present in the similarity matrix')
    block = sim[np.ix_(ids, ids)]
    names = [_class_label(int(k), class_names) for k in ids]
    side = min(3.0 + 0.32 * len(ids), 14.0)
    fig = Figure(figsize=(side + 1.2, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(block, cmap='RdBu_r', vmin=-1, vmax=1)
    ax.set_xticks(range(len(ids)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(ids)), names, fontsize=8)
    ax.set_xlabel('teacher prototype')
    ax.set_ylabel('student prototype')
    if len(ids) <= 20:
        for i in range(len(ids)):
            for j in range(len(ids)):
                ax.text(j, i, f'{block[i, j]:.2f}', ha='center',
                        va='center', fontsize=6,
                        color='white' if abs(block[i, j]) > 0.6 else 'black')
    diag = float(np.mean(np.diag(block)))
    off = float(block[~np.eye(len(ids), dtype=bool)].mean()) \
        if len(ids) > 1 else float('nan')
    ax.set_title(f'{title}\ncos(student_k, teacher_j): diagonal mean '
                 f'{diag:.3f}, off-diagonal mean {off:.3f}', fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_prototype_pca(ps: np.ndarray,
                       pt: np.ndarray,
                       class_ids: Sequence[int],
                       path: str,
                       class_names: Optional[Sequence[str]] = None,
                       title: str = '') -> np.ndarray:
    """Save a joint 2-D PCA of teacher and student prototypes as PNG.

    Teacher and student prototypes of the present classes are projected
    together (one PCA over the 2M points); a class keeps its colour, the
    teacher is a circle, the student a triangle, and a line joins the pair.

    Args:
        ps (np.ndarray): Student prototypes of the present classes (M, C).
        pt (np.ndarray): Teacher prototypes of the same classes (M, C).
        class_ids (Sequence[int]): The M class ids (for colours and names).
        path (str): Output PNG path.
        class_names (Sequence[str], optional): Names indexed by class id.
        title (str): Figure title.

    Returns:
        np.ndarray: The (2M, 2) coordinates, teacher rows first.
    """
    m = len(class_ids)
    coords, ratio = pca_2d(np.concatenate([pt, ps], axis=0))
    ct, cs = coords[:m], coords[m:]
    fig = Figure(figsize=(6.4, 5.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, k in enumerate(class_ids):
        col = _colour(int(k))
        ax.plot([ct[i, 0], cs[i, 0]], [ct[i, 1], cs[i, 1]], '-', color=col,
                lw=1, alpha=0.7)
        ax.scatter(*ct[i], marker='o', s=60, color=col, edgecolors='k')
        ax.scatter(*cs[i], marker='^', s=60, color=col, edgecolors='k')
        ax.annotate(_class_label(int(k), class_names), ct[i], fontsize=7,
                    xytext=(4, 4), textcoords='offset points')
    ax.scatter([], [], marker='o', color='grey', edgecolors='k',
               label='teacher')
    ax.scatter([], [], marker='^', color='grey', edgecolors='k',
               label='student (after connector)')
    ax.legend(loc='best', fontsize=8)
    ax.set_xlabel(f'PC1 ({100 * ratio[0]:.0f} % of variance)')
    ax.set_ylabel(f'PC2 ({100 * ratio[1]:.0f} % of variance)')
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return coords

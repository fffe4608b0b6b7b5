"""Save pictures of teacher vs student class prototypes during training."""
import copy
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmrazor.registry import HOOKS

from ...visualization.prototype_vis import (batch_prototypes,
                                            plot_prototype_pca,
                                            plot_similarity_matrix,
                                            prototype_similarity)


@HOOKS.register_module()
class PrototypeVisHook(Hook):
    """Every ``interval`` iterations, picture the prototypes of the batch.

    After a training iteration the distiller's recorders still hold the
    teacher and student features of that batch. This hook reads them (the
    student one through a *copy* of its connector, as the loss sees it),
    re-derives the batch's labels by running the model's data preprocessor
    on ``data_batch`` (so they are padded exactly as in training), computes
    per-batch class prototypes with the loss's own
    :meth:`I2CKDLoss.prototypes` (its ``num_classes``, ``ignore_index``,
    ``label_resize`` and accumulation dtype; ``scope='batch'``), and saves
    to ``work_dir/<out_dir>/``:

    * ``proto_sim_iter{N:06d}.png`` / ``.npy``: the (K, K) cosine similarity
      ``S[k, j] = cos(student_k, teacher_j)`` (NaN rows/columns for classes
      absent from the batch; the picture shows the present ones);
    * ``proto_pca_iter{N:06d}.png``: a joint 2-D PCA of teacher (circles)
      and student (triangles) prototypes, one colour per class, a line per
      pair.

    With ``log_to_hub`` it also logs ``train/proto_cos_diag`` (mean of the
    diagonal over present classes: intra-class agreement) and
    ``train/proto_cos_offdiag`` (mean off-diagonal: inter-class similarity);
    MMEngine's logger repeats the last value at every log interval until the
    next picture, so read them at multiples of ``interval``.

    It changes nothing in training: all work runs under ``no_grad``, the
    connector is deep-copied (so a BN in it keeps its running statistics),
    and the preprocessor's output is a new batch (``data_batch`` is not
    modified). Only the main process writes files.

    Args:
        interval (int): Every how many iterations. Defaults to 500.
        loss_name (str): The distiller's loss whose inputs are pictured.
            Defaults to ``'loss_i2ckd'``.
        student_key (str): That loss's student-feature argument. Defaults
            to ``'preds_S'``.
        teacher_key (str): Its teacher-feature argument. Defaults to
            ``'preds_T'``.
        class_names (Sequence[str], optional): Defaults to the training
            dataset's ``metainfo['classes']`` when it has them.
        pca_normalize (bool, optional): L2-normalise prototypes before the
            PCA. Defaults to the loss's ``normalize`` (plot what it compares).
        out_dir (str): Sub-folder of ``work_dir``. Defaults to ``'vis'``.
        log_to_hub (bool): Log the diagonal/off-diagonal means. Defaults to
            True.
        save_npy (bool): Also save the matrix as ``.npy``. Defaults to True.

    Example (in an MMSeg-scoped config the registry prefix is needed)::

        custom_hooks = [dict(type='mmrazor.PrototypeVisHook', interval=500)]
    """

    priority = 'NORMAL'  # before LoggerHook, which logs the hub's scalars

    def __init__(self,
                 interval: int = 500,
                 loss_name: str = 'loss_i2ckd',
                 student_key: str = 'preds_S',
                 teacher_key: str = 'preds_T',
                 class_names: Optional[Sequence[str]] = None,
                 pca_normalize: Optional[bool] = None,
                 out_dir: str = 'vis',
                 log_to_hub: bool = True,
                 save_npy: bool = True) -> None:
        if int(interval) < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = int(interval)
        self.loss_name = loss_name
        self.student_key = student_key
        self.teacher_key = teacher_key
        self.class_names = list(class_names) if class_names else None
        self.pca_normalize = pca_normalize
        self.out_dir = out_dir
        self.log_to_hub = log_to_hub
        self.save_npy = save_npy

    # ------------------------------------------------------------------
    def _algorithm(self, runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        distiller = getattr(model, 'distiller', None)
        if distiller is None or not hasattr(distiller,
                                            'loss_forward_mappings'):
            raise TypeError(
                'PrototypeVisHook needs a distillation algorithm with a '
                'ConfigurableDistiller (e.g. I2CKDDistill), got '
                f'{type(model).__name__}')
        mappings = distiller.loss_forward_mappings
        if self.loss_name not in mappings:
            raise KeyError(
                f'PrototypeVisHook: loss "{self.loss_name}" is not in the '
                f'distiller\'s loss_forward_mappings {list(mappings)}')
        for key in (self.student_key, self.teacher_key):
            if key not in mappings[self.loss_name]:
                raise KeyError(
                    f'PrototypeVisHook: {self.loss_name} has no input '
                    f'"{key}" (it has {list(mappings[self.loss_name])})')
        return model, distiller

    def _loss(self, distiller):
        loss = distiller.distill_losses[self.loss_name]
        if not callable(getattr(loss, 'prototypes', None)):
            raise TypeError(
                f'PrototypeVisHook: {self.loss_name} is a '
                f'{type(loss).__name__}, which has no prototypes() method; '
                'the hook pictures the prototypes of an I2CKDLoss')
        return loss

    def _pca_normalize(self, loss) -> bool:
        if self.pca_normalize is None:
            return bool(loss.normalize)  # plot what the loss compares
        return bool(self.pca_normalize)

    def before_train(self, runner) -> None:
        model, distiller = self._algorithm(runner)
        self._loss(distiller)
        if getattr(model.data_preprocessor, 'batch_augments', None):
            raise ValueError(
                'PrototypeVisHook re-runs the data preprocessor to get the '
                'batch\'s padded labels; random batch_augments would give '
                'other labels than training saw')
        if self.class_names is None:
            dataset = getattr(runner.train_dataloader, 'dataset', None)
            meta = getattr(dataset, 'metainfo', None) or {}
            if meta.get('classes'):
                self.class_names = list(meta['classes'])

    def _record(self, distiller, record: dict) -> torch.Tensor:
        """A loss input as ``ConfigurableDistiller.get_record`` gives it.

        The record itself comes from MMRazor's public ``get_record``; the
        connector is applied here to a *deep copy*, because ``get_record``
        would call the distiller's own connector and a BN inside it would
        update its running statistics (the picture must not change
        training).
        """
        record = dict(record)
        connector = record.pop('connector', None)
        connector_idx = record.pop('connector_idx', None)
        data = distiller.get_record(**record)  # recorder, from_student, ...
        if connector:
            data = copy.deepcopy(distiller.connectors[connector])(data)
        if connector_idx is not None:
            data = data[connector_idx]
        return data

    @torch.no_grad()
    def compute(self, runner, data_batch: dict) -> dict:
        """Prototypes and similarity of the batch the recorders hold.

        Returns:
            dict: ``sim`` (K, K) ndarray, ``ps``/``pt`` (K, C) tensors,
            ``present`` (K,) bool tensor, ``normalize`` flag.
        """
        model, distiller = self._algorithm(runner)
        loss = self._loss(distiller)
        mapping = distiller.loss_forward_mappings[self.loss_name]
        feat_s = self._record(distiller, mapping[self.student_key])
        feat_t = self._record(distiller, mapping[self.teacher_key])
        data = model.data_preprocessor(data_batch, True)
        labels = model.stack_labels(data['inputs'], data['data_samples']) \
            if hasattr(model, 'stack_labels') else torch.stack(
                [s.gt_sem_seg.data[0] for s in data['data_samples']]).long()
        ps, pt, present = batch_prototypes(loss, feat_s, feat_t,
                                           labels.to(feat_t.device))
        normalize = self._pca_normalize(loss)
        return dict(sim=prototype_similarity(ps, pt, present), ps=ps, pt=pt,
                    present=present, normalize=normalize)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        if data_batch is None:
            raise ValueError('PrototypeVisHook needs the data batch')
        if not is_main_process():
            return
        res = self.compute(runner, data_batch)
        sim, present = res['sim'], res['present'].cpu().numpy()
        it = runner.iter + 1
        out = osp.join(runner.work_dir, self.out_dir)
        os.makedirs(out, exist_ok=True)
        stem = f'iter{it:06d}'
        if self.save_npy:
            np.save(osp.join(out, f'proto_sim_{stem}.npy'), sim)
        if not present.any():
            runner.logger.warning(
                f'PrototypeVisHook: no labelled pixel at iteration {it}; '
                'no picture saved')
            return
        plot_similarity_matrix(
            sim, osp.join(out, f'proto_sim_{stem}.png'), self.class_names,
            title=f'{self.loss_name} prototypes, iteration {it}')
        ps, pt = res['ps'][present], res['pt'][present]
        if res['normalize']:
            ps = torch.nn.functional.normalize(ps, dim=1)
            pt = torch.nn.functional.normalize(pt, dim=1)
        plot_prototype_pca(
            ps.cpu().double().numpy(), pt.cpu().double().numpy(),
            np.flatnonzero(present).tolist(),
            osp.join(out, f'proto_pca_{stem}.png'), self.class_names,
            title=f'{self.loss_name} prototypes (2-D PCA), iteration {it}' +
            (', L2-normalised' if res['normalize'] else ''))
        if self.log_to_hub:
            ids = np.flatnonzero(present)
            block = sim[np.ix_(ids, ids)]
            runner.message_hub.update_scalar('train/proto_cos_diag',
                                             float(np.diag(block).mean()))
            if len(ids) > 1:
                off = block[~np.eye(len(ids), dtype=bool)].mean()
                runner.message_hub.update_scalar('train/proto_cos_offdiag',
                                                 float(off))

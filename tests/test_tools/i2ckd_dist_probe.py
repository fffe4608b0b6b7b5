"""A test-only hook that lets every rank of a distributed run report what it
did (tests/test_tools/test_dist_launcher.py): only rank 0 writes
checkpoints and logs, so without it nothing shows what rank 1 trained on or
whether it ended with the same weights."""
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Saves, per rank, ``rank{r}_from{start_iter}.pth`` holding the world
    size, the start iteration, the image paths of every batch, the student's
    parameters before and after training and the I2CKD prototype scope.

    Args:
        out_dir (str): Folder for the per-rank files.
    """

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.record = {}

    @staticmethod
    def _algorithm(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _student_params(self, runner):
        return {
            k: v.detach().clone()
            for k, v in self._algorithm(runner).student.named_parameters()
        }

    def before_train(self, runner) -> None:
        algorithm = self._algorithm(runner)
        loss = algorithm.distiller.distill_losses['loss_i2ckd']
        self.record = dict(
            distributed=is_distributed(),
            rank=get_rank(),
            world_size=get_world_size(),
            start_iter=runner.iter,
            prototype_scope=loss.prototype_scope,
            batches=[],
            student_start=self._student_params(runner))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.record['batches'].append(
            [s.img_path for s in data_batch['data_samples']])

    def after_train(self, runner) -> None:
        self.record['student_end'] = self._student_params(runner)
        name = (f"rank{self.record['rank']}_"
                f"from{self.record['start_iter']}.pth")
        torch.save(self.record, osp.join(self.out_dir, name))

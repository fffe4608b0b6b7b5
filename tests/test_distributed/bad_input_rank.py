"""One rank of a 2-process run whose bad input only rank 1 sees
(test_bad_input_stops_every_rank.py starts two of these).

``python bad_input_rank.py CASE WORK_DIR`` with the torch launcher's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): an
MMEngine Runner, ``launcher='pytorch'`` (gloo, MMEngine's DDP wrapper),
trains the tiny I2CKDDistill for 2 iterations, batch 2 per rank, a
checkpoint every iteration. The sampler (not shuffled) gives rank 0 images
0, 2 | 4, 6 and rank 1 images 1, 3 | 5, 7: image 5, in rank 1's last
batch, is bad (CASE ``label``: rows with id 200; ``nan`` and ``amp``: a NaN
patch; ``amp`` trains with MMEngine's AmpOptimWrapper, bf16 autocast and a
CPU GradScaler).

Prints ``TRACE`` lines: the start time of each iteration, the iterations
whose after_train_iter hooks ran (with ``distill.amp_skipped`` and a
checksum of the student's parameters), and the error (type, message, time).
"""
import sys
import time

import i2ckd_mm  # noqa: F401  (compat shims before mmrazor)
import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset

from tiny_models import tiny_distill_cfg

BAD_IMAGE = 5


class Images(Dataset):
    """8 random 32x32 images with labels in [0, 4); image 5 is bad."""

    def __init__(self, case: str):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (8, 3, 32, 32), generator=g,
                                    dtype=torch.uint8)
        self.labels = torch.randint(0, 4, (8, 1, 32, 32), generator=g)
        self.case = case

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image, label = self.images[i].clone(), self.labels[i].clone()
        if i == BAD_IMAGE and self.case == 'label':
            label[:, :4] = 200
        elif i == BAD_IMAGE and self.case in ('nan', 'amp'):
            image = image.float()  # passes the data preprocessor as it is
            image[:, 4:12, 4:12] = float('nan')
        return dict(inputs=image, data_samples=SegDataSample(
            gt_sem_seg=PixelData(data=label)))


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """MMEngine's AmpOptimWrapper on a CPU: its constructor refuses a
    machine without an accelerator, and its default GradScaler (CUDA's)
    would be disabled there and step every gradient; this one has torch's
    CPU GradScaler (torch >= 2.3). Its autocast (``optim_context``) is
    MMEngine's, bf16 on a CPU."""

    def __init__(self, optimizer, dtype='bfloat16'):
        super(AmpOptimWrapper, self).__init__(optimizer=optimizer)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=256.0)
        self.cast_dtype = getattr(torch, dtype)


def checksum(runner) -> float:
    model = runner.model.module
    return float(sum(p.detach().double().sum()
                     for p in model.student.parameters()))


class Trace(Hook):
    priority = 'LOWEST'  # after the checkpoint hook

    def before_train(self, runner):
        print(f'TRACE weights 0 {checksum(runner)!r}', flush=True)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        print(f'TRACE start {runner.iter + 1} {time.time():.3f}', flush=True)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        skipped = outputs.get('distill.amp_skipped')
        print(f'TRACE done {runner.iter + 1}'
              + ('' if skipped is None else f' skipped {float(skipped):g}'),
              flush=True)
        print(f'TRACE weights {runner.iter + 1} {checksum(runner)!r}',
              flush=True)


def main(case: str, work_dir: str) -> None:
    torch.set_num_threads(1)
    runner = Runner(
        model=tiny_distill_cfg(_scope_='mmrazor'),
        work_dir=work_dir,
        train_dataloader=dict(
            batch_size=2, num_workers=0, dataset=Images(case),
            sampler=dict(type='InfiniteSampler', shuffle=False)),
        optim_wrapper=dict(
            type='CPUAmpOptimWrapper' if case == 'amp' else 'OptimWrapper',
            optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           by_epoch=False, interval=1)),
        custom_hooks=[Trace()],
        launcher='pytorch',
        # a rank left waiting in a collective fails after 120 s instead of
        # gloo's 30 min (the test expects the error within seconds)
        env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=120)),
        default_scope='mmseg')
    try:
        runner.train()
    except Exception as e:  # noqa: B902 (reported, then re-raised)
        print(f'TRACE error {time.time():.3f} {type(e).__name__}: {e}',
              flush=True)
        raise
    print('TRACE finished', flush=True)


if __name__ == '__main__':
    main(*sys.argv[1:3])

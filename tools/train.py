# Copyright (c) OpenMMLab. All rights reserved.
# Adapted from mmseg/mmrazor tools/train.py for i2ckd_mm.
"""Train a segmentor or a distillation algorithm with the MMEngine Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--trust-checkpoint PATH]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import logging
import os
import os.path as osp

# compat shims (mmcv-lite ops, mmrazor on torch 2, checkpoint loading) and
# the i2ckd_mm registrations must come before any config or model is built,
# even when the config lacks custom_imports
import i2ckd_mm  # noqa: F401,I001
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from i2ckd_mm.checkpoint import add_trust_argument, trust_checkpoints


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a segmentor / distill a student')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume training: with no value (or "auto") from the latest '
        'checkpoint in the work_dir, or from the given checkpoint path')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by the actual / base batch size '
        '(auto_scale_lr.base_batch_size in the config)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    add_trust_argument(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2) or
    # --local_rank (older); accept both
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_amp(cfg: Config) -> None:
    """Switch the (architecture) optimizer wrapper to AmpOptimWrapper."""
    wrappers = [cfg.optim_wrapper]
    if 'constructor' in cfg.optim_wrapper and \
            'architecture' in cfg.optim_wrapper:
        wrappers = [cfg.optim_wrapper.architecture]
    for wrapper in wrappers:
        kind = wrapper.get('type', 'OptimWrapper')
        if kind == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
            continue
        if kind != 'OptimWrapper':
            raise ValueError('--amp needs optim_wrapper type OptimWrapper, '
                             f'got {kind}')
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if not ('auto_scale_lr' in cfg and
                'base_batch_size' in cfg.auto_scale_lr):
            raise KeyError('--auto-scale-lr needs auto_scale_lr.'
                           'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume is None:
        cfg.resume = False
    elif args.resume == 'auto':
        # MMEngine finds work_dir/last_checkpoint
        cfg.resume = True
        cfg.load_from = None
    else:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume checkpoint not found: {args.resume!r}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    trust_checkpoints(args.trust_checkpoint, cfg)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()

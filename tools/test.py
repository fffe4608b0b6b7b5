# Copyright (c) OpenMMLab. All rights reserved.
# Adapted from mmseg tools/test.py for i2ckd_mm.
"""Test (and evaluate) a segmentor or a distillation run's student.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]
        [--trust-checkpoint PATH]

For a distillation config the Runner builds the whole algorithm and MMRazor
evaluates its student (``architecture``).
"""
import argparse
import os
import os.path as osp

import i2ckd_mm  # noqa: F401,I001  (compat shims + registrations first)
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from i2ckd_mm.checkpoint import add_trust_argument, trust_checkpoints


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and eval) a segmentor / distilled student')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the dir where the evaluation metrics are dumped as json')
    parser.add_argument(
        '--out',
        type=str,
        help='the dir to save the predictions for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='dir where painted images are saved (under '
        'work_dir/timestamp/show_dir)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    add_trust_argument(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg: Config, args) -> Config:
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks, e.g. '
            'visualization=dict(type=\'SegVisualizationHook\')')
    hook = default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def build_cfg(args) -> Config:
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint!r}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    trust_checkpoints(args.trust_checkpoint, cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()

"""Pretrain a toy model's backbone on ToyNet classification and save it as
an MMSeg ``Pretrained`` checkpoint (the toy proxies' ImageNet stand-in).

    python tools/pretrain_toy_backbone.py CONFIG OUT.pth [--model student]
        [--iters 1500] [--batch-size 64] [--size 64] [--lr 2e-3]
        [--seed 1016] [--device cpu] [--depth N] [--base-channels N]

``CONFIG`` is a toy model file holding ``student_model`` / ``teacher_model``
(e.g. ``configs/toy/_base_/models/toy_deeplabv3.py``) or any segmentation
config (its ``model.backbone``); ``--depth`` / ``--base-channels`` change the
backbone (e.g. a deeper teacher). Then train with
``--cfg-options model.backbone.init_cfg.type=Pretrained
model.backbone.init_cfg.checkpoint=OUT.pth`` (a student inside a
distillation config: ``model.architecture.backbone...``). Images come from
their own renderer and seed (``tools/toy/pretrain.py``), never from the
segmentation splits.
"""
import argparse
import json

import torch

from toy.pretrain import PRETRAIN_SEED, pretrain_backbone


def backbone_of(config: str, model: str = 'student',
                depth=None, base_channels=None) -> dict:
    """The ResNetV1c backbone dict of ``config`` (``<model>_model`` if the
    file has one, else ``model``), with the depth / width overridden."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    key = f'{model}_model'
    m = cfg[key] if key in cfg else cfg['model']
    if 'architecture' in m:  # a distillation config: the student's
        m = m['architecture']
    bb = m['backbone'].to_dict()
    if depth is not None:
        bb['depth'] = depth
    if base_channels is not None:
        bb['base_channels'] = bb['stem_channels'] = base_channels
    return bb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('out')
    p.add_argument('--model', default='student',
                   help='student or teacher (the <model>_model entry)')
    p.add_argument('--depth', type=int)
    p.add_argument('--base-channels', type=int)
    p.add_argument('--iters', type=int, default=1500)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=PRETRAIN_SEED)
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true')
    p.add_argument('--threads', type=int,
                   help='torch intra-op threads (default: torch\'s)')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import i2ckd_mm  # noqa: F401  (compat shims, registries)
    bb = backbone_of(args.config, args.model, args.depth, args.base_channels)
    stats = pretrain_backbone(bb, args.out, iters=args.iters,
                              batch_size=args.batch_size, size=args.size,
                              lr=args.lr, seed=args.seed, device=args.device,
                              amp=args.amp)
    print(json.dumps(dict(out=args.out, **stats)))


if __name__ == '__main__':
    main()

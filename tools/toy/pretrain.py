"""Backbone pretraining for the toy proxies: "ToyNet" classification.

The paper's students (and teachers) start from ImageNet-pretrained
backbones. The toy proxies' stand-in: a ResNetV1c backbone trained to
classify procedurally generated object-centric images (one object per
image, 12 classes of shapes and textures in random colours on textured,
cluttered backgrounds), then saved as an MMSeg ``Pretrained`` checkpoint
(``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` on the backbone; read
through the package's weights-only loader, ``i2ckd_mm.checkpoint``).

What keeps it apart from the segmentation data:

* its images come from their own renderer (:func:`render_toynet`), drawn
  from a random stream seeded with ``[seed, PRETRAIN_STREAM]``
  (``PRETRAIN_STREAM`` = 7, no split of ``write_splits`` uses it), with
  ``seed`` = :data:`PRETRAIN_SEED` by default, not the seed of any
  ToyShapes/ToyStreets split; no segmentation image, label or split is read;
* like ImageNet for Cityscapes, it shares object *kinds* with the target
  data (disks, rings, bars, window grids, foliage-like blobs), not images.

Like ImageNet-pretrained ResNets, the backbone is trained with the plain
strides (1, 2, 2, 2) and no dilation; the segmentation configs then use the
same weights dilated (``strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)``), as
MMSeg does with ``open-mmlab://resnet18_v1c``. Weight shapes do not depend on
strides or dilations.
"""
import os
import os.path as osp
import time
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

#: Classes of the pretraining task, in label order.
TOYNET_CLASSES = ('disk', 'ring', 'square', 'triangle', 'cross', 'ellipse',
                  'star', 'bar', 'window grid', 'stripes', 'checker', 'blobs')
#: Default seed of the pretraining images (no segmentation split uses it).
PRETRAIN_SEED = 1016
#: Index of the pretraining stream in ``default_rng([seed, index])``; the
#: segmentation splits use 0 (train), 1 (val), 2 (test).
PRETRAIN_STREAM = 7


def _polygon(mask, cx, cy, radii, theta):
    k = len(radii)
    ang = theta + np.arange(k) * 2 * np.pi / k
    pts = np.stack([cx + radii * np.cos(ang), cy + radii * np.sin(ang)], 1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)


def _object_mask(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Binary mask (uint8) of one object of ToyNet class ``cls``."""
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.18, 0.34) * size
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    c = (int(round(cx)), int(round(cy)))
    name = TOYNET_CLASSES[cls]
    if name == 'disk':
        cv2.circle(mask, c, int(round(r)), 1, -1)
    elif name == 'ring':
        cv2.circle(mask, c, int(round(r)), 1, -1)
        cv2.circle(mask, c, int(round(r * rng.uniform(0.4, 0.65))), 0, -1)
    elif name == 'square':
        _polygon(mask, cx, cy, np.full(4, r * 1.15), theta)
    elif name == 'triangle':
        _polygon(mask, cx, cy, np.full(3, r * 1.3), theta)
    elif name == 'cross':
        w = r * rng.uniform(0.25, 0.4)
        arm = np.array([[-r, -w], [r, -w], [r, w], [-r, w]])
        for a in (theta, theta + np.pi / 2):
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = arm @ rot.T + [cx, cy]
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif name == 'ellipse':
        cv2.ellipse(mask, c, (int(r), int(r * rng.uniform(0.3, 0.55))),
                    float(np.degrees(theta)), 0, 360, 1, -1)
    elif name == 'star':
        radii = np.tile([r * 1.2, r * 0.5], 5)
        _polygon(mask, cx, cy, radii, theta)
    elif name == 'bar':  # a thin pole-like line, 1-3 pixels wide
        d = np.array([np.cos(theta), np.sin(theta)]) * r * 1.4
        p0 = np.round([cx - d[0], cy - d[1]]).astype(int)
        p1 = np.round([cx + d[0], cy + d[1]]).astype(int)
        cv2.line(mask, tuple(map(int, p0)), tuple(map(int, p1)), 1,
                 int(rng.integers(1, 4)))
    elif name == 'window grid':  # small rectangles in a grid (facades)
        x0, y0 = int(cx - r), int(cy - r)
        step = int(rng.integers(4, 7))
        for y in range(y0, int(cy + r) - 2, step):
            for x in range(x0, int(cx + r) - 1, step - 1):
                mask[max(0, y):y + 3, max(0, x):x + 2] = 1
    elif name in ('stripes', 'checker'):  # a textured square patch
        yy, xx = np.mgrid[:size, :size]
        period = rng.uniform(3, 7)
        if name == 'stripes':
            pat = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 *
                         np.pi / period) > 0
        else:
            pat = ((xx // (period / 2)) + (yy // (period / 2))) % 2 == 0
        box = np.zeros((size, size), np.uint8)
        _polygon(box, cx, cy, np.full(4, r * 1.2), theta)
        mask = (box.astype(bool) & pat).astype(np.uint8)
    elif name == 'blobs':  # a cluster of small disks (foliage-like)
        for _ in range(int(rng.integers(5, 10))):
            o = rng.normal(0, r * 0.45, 2)
            cv2.circle(mask, (int(cx + o[0]), int(cy + o[1])),
                       int(rng.integers(2, max(3, int(r * 0.45)))), 1, -1)
    else:
        raise ValueError(f'no ToyNet object for class {cls}')
    return mask


def render_toynet(size: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """One ToyNet image (size x size x 3 uint8, BGR) and its class index."""
    cls = int(rng.integers(len(TOYNET_CLASSES)))
    yy, xx = np.mgrid[:size, :size] / size
    base = rng.uniform(40, 200, 3)
    grad = rng.uniform(-60, 60, (2, 3))
    img = (base + xx[..., None] * grad[0] + yy[..., None] * grad[1])
    img = img.astype(np.float32)
    # clutter: lines and dots in random colours, not the object
    for _ in range(int(rng.integers(0, 4))):
        p = rng.integers(0, size, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                 tuple(float(v) for v in rng.uniform(0, 255, 3)),
                 int(rng.integers(1, 3)))
    mask = _object_mask(cls, size, rng).astype(bool)
    colour = rng.uniform(0, 255, 3)
    img[mask] = colour + rng.normal(0, 10, (int(mask.sum()), 3))
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), cls


def toynet_batch(n: int, size: int, rng: np.random.Generator):
    """``n`` images as a float N x 3 x size x size array (RGB, normalised as
    the toy configs' SegDataPreProcessor does) and their int64 labels."""
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    imgs, labels = zip(*(render_toynet(size, rng) for _ in range(n)))
    x = (np.stack(imgs)[..., ::-1].astype(np.float32) - mean) / std
    return (np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
            np.array(labels, np.int64))


def classification_backbone_cfg(backbone: dict) -> dict:
    """``backbone`` (a segmentation config's ResNetV1c dict) with ImageNet
    strides and no dilation, no init_cfg: the network that is pretrained.
    Its weights have the same names and shapes as the dilated one's."""
    cfg = {k: v for k, v in backbone.items() if k != 'init_cfg'}
    stages = cfg.get('num_stages', 4)
    cfg.update(strides=(1, 2, 2, 2)[:stages], dilations=(1,) * stages,
               contract_dilation=False, out_indices=(stages - 1,))
    cfg.setdefault('_scope_', 'mmseg')
    cfg.pop('pretrained', None)
    return cfg


def pretrain_backbone(backbone: dict,
                      out: str,
                      iters: int = 1500,
                      batch_size: int = 64,
                      size: int = 64,
                      lr: float = 2e-3,
                      seed: int = PRETRAIN_SEED,
                      device: str = 'cpu',
                      eval_images: int = 512,
                      log_every: int = 100,
                      amp: bool = False) -> Dict[str, float]:
    """Train ``backbone`` (a ResNetV1c config dict) on ToyNet classification
    and save its weights as an MMSeg ``Pretrained`` checkpoint.

    The file holds ``{'state_dict': backbone weights (keys as the backbone's
    own, e.g. 'stem.0.weight'), 'meta': {...}}``, tensors and plain Python
    values only, so ``torch.load(weights_only=True)`` reads it.

    Args:
        backbone (dict): The backbone config of a toy segmentation model.
        out (str): Path of the checkpoint to write.
        iters (int): Optimizer steps.
        batch_size (int): Images per step (rendered on the fly).
        size (int): Image side.
        lr (float): AdamW peak learning rate (cosine decay to 0).
        seed (int): Seed of the image stream and of the head's init.
        device (str): ``'cpu'`` or ``'cuda'``.
        eval_images (int): Held-out images (their own stream) for the
            reported accuracy.
        log_every (int): Print the running loss every so many steps.
        amp (bool): bfloat16 autocast (GPU).

    Returns:
        dict: ``train_loss`` (last 50 steps), ``eval_acc`` (held-out
        top-1 accuracy), ``seconds``.
    """
    import torch
    import torch.nn.functional as F
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    torch.manual_seed(seed)
    net = MODELS.build(classification_backbone_cfg(backbone)).to(device)
    net.eval()
    with torch.no_grad():
        probe = net(torch.zeros(1, 3, size, size, device=device))[-1]
    channels = probe.shape[1]
    head = torch.nn.Linear(channels, len(TOYNET_CLASSES)).to(device)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warm = max(1, iters // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min((i + 1) / warm, 0.5 * (1 + np.cos(
            np.pi * min(1.0, (i - warm) / max(1, iters - warm))))))
    rng = np.random.default_rng([seed, PRETRAIN_STREAM])
    eval_rng = np.random.default_rng([seed, PRETRAIN_STREAM, 1])

    def logits(x):
        with torch.autocast(device_type=device.split(':')[0],
                            dtype=torch.bfloat16, enabled=amp):
            f = net(x)[-1]
            return head(f.float().mean((2, 3)))

    start = time.time()
    losses = []
    net.train()
    for it in range(iters):
        x, y = toynet_batch(batch_size, size, rng)
        x = torch.from_numpy(x).to(device)
        if rng.random() < 0.5:
            x = x.flip(3)
        y = torch.from_numpy(y).to(device)
        loss = F.cross_entropy(logits(x).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (it + 1) % log_every == 0:
            print(f'pretrain {it + 1}/{iters} loss '
                  f'{np.mean(losses[-log_every:]):.3f} '
                  f'({time.time() - start:.0f} s)', flush=True)
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, eval_images, batch_size):
            x, y = toynet_batch(min(batch_size, eval_images - i), size,
                                eval_rng)
            pred = logits(torch.from_numpy(x).to(device)).argmax(1).cpu()
            correct += int((pred.numpy() == y).sum())
    seconds = time.time() - start
    stats = dict(train_loss=float(np.mean(losses[-50:])),
                 eval_acc=correct / max(1, eval_images) * 100,
                 seconds=seconds)
    meta = dict(task='ToyNet classification', classes=list(TOYNET_CLASSES),
                seed=int(seed), stream=PRETRAIN_STREAM, iters=int(iters),
                batch_size=int(batch_size), size=int(size), lr=float(lr),
                depth=int(backbone.get('depth', 0)),
                base_channels=int(backbone.get('base_channels', 0)),
                **{k: float(v) for k, v in stats.items()})
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    d = osp.dirname(osp.abspath(out))
    os.makedirs(d, exist_ok=True)
    tmp = out + '.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, out)
    return stats


def pretrained_init(checkpoint: str) -> dict:
    """The MMSeg backbone ``init_cfg`` that loads ``checkpoint``."""
    return dict(type='Pretrained', checkpoint=checkpoint)


def load_meta(checkpoint: str) -> Optional[dict]:
    """The ``meta`` of a pretraining checkpoint, read weights-only."""
    from i2ckd_mm.checkpoint import load_checkpoint_file
    return load_checkpoint_file(checkpoint, map_location='cpu').get('meta')

"""Generate ToyStreets: a street-scene-like synthetic segmentation dataset.

A second proxy task, different in kind from ToyShapes: wide images
(128 x 256 by default) with a street layout (sky, buildings, road in
perspective, sidewalks, vegetation), 13 classes with strong imbalance (road,
building and sky cover most pixels; poles, traffic lights and signs,
bicycles and persons a fraction of a percent) and small and thin objects
(1-2 pixel poles, 3-5 pixel lights and signs). Colours overlap between
classes (grey road / sidewalk / wall / pole / truck, cars in any colour), so
the class follows from shape, position and context. The bottom rows are an
"ego vehicle" labelled 255 (ignore), as in Cityscapes.
"""
from typing import Dict, Tuple

import cv2
import numpy as np

from i2ckd_mm.datasets.toy import TOY_STREETS_CLASSES
from .shapes import write_splits

IGNORE_INDEX = 255
_C = {name: i for i, name in enumerate(TOY_STREETS_CLASSES)}


def _grey(rng, lo=80, hi=150):
    g = rng.uniform(lo, hi)
    return np.array([g, g, g]) + rng.uniform(-8, 8, 3)


def _paint(img, label, mask, colour, cls, rng, noise=6.0):
    """Paint ``mask`` with ``colour`` (+ per-pixel noise) and label ``cls``."""
    if not mask.any():
        return
    n = int(mask.sum())
    img[mask] = colour + rng.normal(0, noise, (n, 3))
    label[mask] = cls


def render_street(height: int, width: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One street image (H x W x 3 uint8, BGR) and its labels (H x W uint8)."""
    H, W = height, width
    img = np.zeros((H, W, 3), np.float32)
    label = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[:H, :W]
    horizon = int(H * rng.uniform(0.38, 0.5))

    # sky: a vertical gradient, bluish or overcast grey
    top = rng.uniform([150, 110, 60], [240, 200, 160])
    if rng.random() < 0.4:
        top = _grey(rng, 150, 220)
    sky = top + (yy[..., None] / H) * rng.uniform(10, 40)
    img[:] = sky
    label[:] = _C['sky']

    # road: a trapezoid from the vanishing point; sidewalks either side;
    # terrain beyond the sidewalks
    vx = W * rng.uniform(0.35, 0.65)
    depth = np.clip((yy - horizon) / max(H - horizon, 1), 0, 1)
    half_road = depth * W * rng.uniform(0.45, 0.7)
    half_walk = half_road + depth * W * rng.uniform(0.15, 0.3)
    below = yy >= horizon
    road = below & (np.abs(xx - vx) <= half_road)
    walk = below & ~road & (np.abs(xx - vx) <= half_walk)
    terrain = below & ~road & ~walk
    road_grey = _grey(rng, 70, 120)
    _paint(img, label, terrain, rng.uniform([40, 90, 60], [90, 150, 110]),
           _C['terrain'], rng, 10)
    _paint(img, label, walk, road_grey + rng.uniform(15, 35), _C['sidewalk'],
           rng)
    _paint(img, label, road, road_grey, _C['road'], rng)
    # lane marks: part of the road (same class), thin white dashes
    for t in np.linspace(0.15, 0.95, 6):
        y = int(horizon + t * (H - horizon))
        if y < H and rng.random() < 0.7:
            w = max(1, int(t * 3))
            x0 = int(vx - w)
            img[y:y + w, max(0, x0):x0 + 2 * w] = 220

    # buildings along the horizon (some walls), windows in a grid
    x = 0
    while x < W:
        bw = int(rng.uniform(0.08, 0.25) * W)
        if rng.random() < 0.8:
            bh = int(rng.uniform(0.2, 0.95) * horizon)
            y0 = horizon - bh
            m = np.zeros((H, W), bool)
            m[y0:horizon + 2, x:x + bw] = True
            colour = (_grey(rng, 70, 170) if rng.random() < 0.6 else
                      rng.uniform([50, 60, 90], [120, 130, 180]))
            _paint(img, label, m, colour, _C['building'], rng, 5)
            for wy in range(y0 + 3, horizon - 3, 6):
                for wx in range(x + 2, x + bw - 3, 5):
                    img[wy:wy + 3, wx:wx + 2] = colour * 0.5
        x += bw
    # a low wall/fence in front of the buildings, grey like the road
    if rng.random() < 0.6:
        x0, x1 = sorted(rng.integers(0, W, 2))
        fh = int(rng.uniform(3, 7))
        m = np.zeros((H, W), bool)
        m[horizon - fh:horizon + 1, x0:x1] = True
        _paint(img, label, m, _grey(rng, 90, 160), _C['fence'], rng)
        img[horizon - fh:horizon + 1, x0:x1:3] *= 0.7  # slats

    # vegetation: textured blobs (trees) on the sidewalk line / horizon
    for _ in range(rng.integers(1, 5)):
        cx = int(rng.uniform(0, W))
        cy = int(horizon - rng.uniform(0, 0.4) * horizon)
        r = int(rng.uniform(0.06, 0.16) * H)
        m = np.zeros((H, W), np.uint8)
        cv2.ellipse(m, (cx, cy), (r, int(r * rng.uniform(0.8, 1.4))), 0, 0,
                    360, 1, -1)
        m = m.astype(bool)
        colour = rng.uniform([30, 90, 30], [80, 160, 90])
        _paint(img, label, m, colour, _C['vegetation'], rng, 18)

    def ground_y(t):  # image row of a point at relative depth t in [0, 1]
        return int(horizon + t * (H - 1 - horizon))

    def side_x(y, side, offset):  # x on the sidewalk at row y
        d = (y - horizon) / max(H - horizon, 1)
        hr = d * W * 0.55
        return int(vx + side * (hr + offset * d * W * 0.12))

    # poles with traffic lights / signs on top (thin and small)
    for _ in range(rng.integers(1, 5)):
        t = rng.uniform(0.1, 0.9)
        yb = ground_y(t)
        xb = np.clip(side_x(yb, rng.choice([-1, 1]), 1.0), 2, W - 3)
        ph = int((0.3 + 0.9 * t) * horizon * 0.6) + 6
        pw = 1 if t < 0.5 else 2
        y0 = max(0, yb - ph)
        m = np.zeros((H, W), bool)
        m[y0:yb, xb:xb + pw] = True
        _paint(img, label, m, _grey(rng, 60, 140), _C['pole'], rng, 4)
        kind = rng.random()
        s = 2 + int(3 * t)
        if kind < 0.4:  # traffic light: dark box with one lit dot
            m = np.zeros((H, W), bool)
            m[max(0, y0 - 2 * s):y0, xb - 1:xb - 1 + s] = True
            _paint(img, label, m, np.array([30, 30, 30]),
                   _C['traffic light'], rng, 4)
            lit = [(40, 40, 220), (40, 200, 60), (40, 200, 230)][
                rng.integers(3)]
            ly = max(0, y0 - 2 * s) + rng.integers(0, max(1, s))
            img[ly:ly + max(1, s // 2), xb:xb + max(1, s // 2)] = lit
        elif kind < 0.8:  # sign: small disk or triangle
            m = np.zeros((H, W), np.uint8)
            cv2.circle(m, (int(xb), int(max(s, y0 - s))), s, 1, -1)
            colour = rng.uniform([20, 20, 150], [80, 80, 240]) \
                if rng.random() < 0.5 else rng.uniform([150, 60, 20],
                                                       [230, 120, 60])
            _paint(img, label, m.astype(bool), colour, _C['traffic sign'],
                   rng, 5)

    # vehicles on the road, far ones first (occlusion), sized by depth
    objs = []
    for _ in range(rng.integers(0, 5)):
        objs.append(('car' if rng.random() < 0.75 else 'truck',
                     rng.uniform(0.05, 0.9)))
    for _ in range(rng.integers(0, 4)):
        objs.append(('person', rng.uniform(0.05, 0.9)))
    for _ in range(rng.integers(0, 2)):
        objs.append(('bicycle', rng.uniform(0.1, 0.9)))
    for name, t in sorted(objs, key=lambda o: o[1]):
        yb = ground_y(t)
        scale = 0.15 + t
        if name in ('car', 'truck'):
            w = int((0.16 if name == 'car' else 0.24) * W * scale)
            h = int(w * (0.45 if name == 'car' else 0.8))
            xc = int(vx + rng.uniform(-0.5, 0.5) * (yb - horizon) /
                     max(H - horizon, 1) * W * 0.9)
            m = np.zeros((H, W), bool)
            m[max(0, yb - h):yb, max(0, xc - w // 2):xc + w // 2] = True
            colour = (rng.uniform(20, 235, 3) if name == 'car' else
                      _grey(rng, 80, 200))
            _paint(img, label, m, colour, _C[name], rng, 5)
            # dark windows and wheels, same class
            wy = max(0, yb - h)
            img[wy + h // 5:wy + h // 2, max(0, xc - w // 3):xc + w // 3] *= \
                0.5
        else:
            side = rng.choice([-1, 1])
            xc = np.clip(side_x(yb, side, rng.uniform(0.2, 1.4)), 2, W - 3)
            h = int(H * 0.22 * scale) + 3
            m = np.zeros((H, W), np.uint8)
            colour = rng.uniform(20, 235, 3)
            if name == 'person':
                cv2.ellipse(m, (int(xc), int(yb - h * 0.45)),
                            (max(1, h // 6), max(2, h // 2 - 1)), 0, 0, 360,
                            1, -1)
                cv2.circle(m, (int(xc), int(yb - h * 0.95)),
                           max(1, h // 8), 1, -1)
            else:  # bicycle: two wheels and a frame, thin lines
                r = max(2, h // 4)
                cv2.circle(m, (int(xc - r), int(yb - r)), r, 1, 1)
                cv2.circle(m, (int(xc + r), int(yb - r)), r, 1, 1)
                cv2.line(m, (int(xc - r), int(yb - r)),
                         (int(xc + r // 2), int(yb - 2 * r)), 1, 1)
                colour = _grey(rng, 20, 90)
            _paint(img, label, m.astype(bool), colour, _C[name], rng, 6)

    # ego vehicle bonnet at the bottom: ignored, as in Cityscapes
    ego = int(H * rng.uniform(0.04, 0.09))
    bonnet = (yy >= H - ego) | ((yy >= H - 2 * ego) & (np.abs(xx - W / 2) <
                                                       W * 0.25))
    img[bonnet] = _grey(rng, 20, 60)
    label[bonnet] = IGNORE_INDEX

    img = cv2.GaussianBlur(img, (3, 3), 0.6) + rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_toy_streets(out_dir: str,
                     num_train: int = 300,
                     num_val: int = 60,
                     height: int = 128,
                     width: int = 256,
                     seed: int = 0,
                     num_test: int = 200) -> Dict[str, int]:
    """Write ToyStreets to ``out_dir`` in MMSeg's custom-dataset layout.

    ``out_dir/img_dir/{train,val,test}/NNNNN.png`` (RGB images, H x W) and
    ``out_dir/ann_dir/{train,val,test}/NNNNN.png`` (uint8 labels 0..12,
    255 = ignore). Same seed, same bytes; each split its own random stream.

    Args:
        out_dir (str): Dataset root; created if missing.
        num_train (int): Training images.
        num_val (int): Validation images (for choices).
        height (int): Image height (>= 64).
        width (int): Image width (>= 64).
        seed (int): Random seed.
        num_test (int): Test images (for reported numbers; 0: none).

    Returns:
        dict: Number of images written per split.
    """
    if height < 64 or width < 64:
        raise ValueError(f'height and width must be >= 64, got {height} x '
                         f'{width}')
    if num_train < 1 or num_val < 1 or num_test < 0:
        raise ValueError('num_train and num_val must be >= 1 and num_test '
                         f'>= 0, got {num_train}, {num_val}, {num_test}')
    return write_splits(out_dir,
                        dict(train=num_train, val=num_val, test=num_test),
                        seed, lambda rng: render_street(height, width, rng))

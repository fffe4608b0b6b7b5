"""Generate the ToyShapes segmentation dataset on disk.

Design (why it leaves room for distillation): five shape classes drawn in
colours and textures that every class shares, on a noisy textured background
with same-coloured distractor strokes labelled background. A pixel inside a
disk looks exactly like a pixel inside a square; only the shape around it
(ring hole, corners, cross arms) tells the class, so the model needs context
and capacity - a wider/deeper teacher learns it clearly better than a narrow
student in a short CPU schedule. Object boundaries are labelled 255 (ignore),
as in Pascal VOC.
"""
import os
import os.path as osp
from typing import Dict

import cv2
import numpy as np

from i2ckd_mm.datasets.toy import TOY_CLASSES

#: Object colours (BGR) shared by all shape classes.
_OBJECT_COLOURS = np.array(
    [[40, 40, 200], [40, 180, 40], [200, 90, 30], [30, 200, 220],
     [180, 50, 180], [220, 220, 220]], dtype=np.float32)
IGNORE_INDEX = 255


def _shape_mask(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary mask (size x size, uint8) of one shape of class ``cls``."""
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.2, 0.3) * size
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    centre = (int(round(cx)), int(round(cy)))
    name = TOY_CLASSES[cls]
    if name == 'disk':
        cv2.circle(mask, centre, int(round(r)), 1, -1)
    elif name == 'ring':
        cv2.circle(mask, centre, int(round(r)), 1, -1)
        cv2.circle(mask, centre, int(round(r * rng.uniform(0.45, 0.6))), 0,
                   -1)
    elif name in ('square', 'triangle'):
        k = 4 if name == 'square' else 3
        rr = r * (1.15 if name == 'square' else 1.3)
        ang = theta + np.arange(k) * 2 * np.pi / k
        pts = np.stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif name == 'cross':
        w = r * rng.uniform(0.3, 0.4)
        arm = np.array([[-r, -w], [r, -w], [r, w], [-r, w]])
        for a in (theta, theta + np.pi / 2):
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = arm @ rot.T + [cx, cy]
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:
        raise ValueError(f'no shape for class {cls} ({name})')
    return mask


def _texture(size: int, colour: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """A size x size x 3 float image: a colour, plain or striped."""
    img = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    if rng.random() < 0.5:
        period = rng.uniform(3, 7)
        a = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:size, :size]
        stripes = np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi /
                         period) > 0
        img = img * np.where(stripes, 1.0, 0.6)[..., None]
    return img


def render_sample(size: int, rng: np.random.Generator):
    """One image (H x W x 3 uint8, BGR) and its label map (H x W uint8)."""
    yy, xx = np.mgrid[:size, :size] / size
    base = rng.uniform(60, 160, 3)
    grad = rng.uniform(-50, 50, (2, 3))
    img = (base + xx[..., None] * grad[0] + yy[..., None] * grad[1])
    img = img.astype(np.float32)
    label = np.zeros((size, size), np.uint8)
    boundary = np.zeros((size, size), bool)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(1, len(TOY_CLASSES)))
        mask = _shape_mask(cls, size, rng).astype(bool)
        colour = _OBJECT_COLOURS[rng.integers(len(_OBJECT_COLOURS))]
        img[mask] = _texture(size, colour, rng)[mask]
        label[mask] = cls
        # shapes drawn later occlude earlier ones; their edges are ignored
        m8 = mask.astype(np.uint8)
        edge = (cv2.dilate(m8, kernel) - cv2.erode(m8, kernel)).astype(bool)
        boundary &= ~mask
        boundary |= edge
    # distractors: strokes and dots in object colours, labelled background;
    # where one crosses a shape the pixel is ambiguous, so it is ignored
    strokes = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 3)):
        colour = _OBJECT_COLOURS[rng.integers(len(_OBJECT_COLOURS))]
        p = rng.integers(0, size, 4)
        stroke = np.zeros((size, size), np.uint8)
        if rng.random() < 0.5:
            cv2.line(stroke, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                     1, int(rng.integers(1, 3)))
        else:
            cv2.circle(stroke, (int(p[0]), int(p[1])),
                       int(rng.integers(1, max(2, size // 20))), 1, -1)
        img[stroke.astype(bool)] = colour
        strokes |= stroke
    img += rng.normal(0, 8, img.shape)
    label[boundary | (strokes.astype(bool) & (label > 0))] = IGNORE_INDEX
    return np.clip(img, 0, 255).astype(np.uint8), label


#: Split name -> index of its independent random stream. Each split has its
#: own stream, so changing one split's size changes no other split.
SPLIT_STREAMS = {'train': 0, 'val': 1, 'test': 2}


def write_splits(out_dir: str, counts: Dict[str, int], seed: int,
                 render) -> Dict[str, int]:
    """Write ``counts[split]`` samples of ``render(rng)`` per split in MMSeg's
    custom-dataset layout (``img_dir/<split>``, ``ann_dir/<split>``, PNG).

    Args:
        out_dir (str): Dataset root; created if missing.
        counts (dict): Images per split name (keys of SPLIT_STREAMS); a
            split with 0 images is not written.
        seed (int): Random seed of the dataset.
        render (callable): ``rng -> (BGR uint8 image, uint8 label map)``.

    Returns:
        dict: Number of images written per split.
    """
    written = {}
    for split, n in counts.items():
        if n == 0:
            continue
        rng = np.random.default_rng([seed, SPLIT_STREAMS[split]])
        img_dir = osp.join(out_dir, 'img_dir', split)
        ann_dir = osp.join(out_dir, 'ann_dir', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(n):
            img, label = render(rng)
            name = f'{i:05d}.png'
            if not (cv2.imwrite(osp.join(img_dir, name), img)
                    and cv2.imwrite(osp.join(ann_dir, name), label)):
                raise OSError(f'could not write {name} under {out_dir}')
        written[split] = n
    return written


def make_toy_shapes(out_dir: str,
                    num_train: int = 300,
                    num_val: int = 60,
                    size: int = 64,
                    seed: int = 0,
                    num_test: int = 200) -> Dict[str, int]:
    """Write ToyShapes to ``out_dir`` in MMSeg's custom-dataset layout.

    ``out_dir/img_dir/{train,val,test}/NNNNN.png`` (RGB images, size x size)
    and ``out_dir/ann_dir/{train,val,test}/NNNNN.png`` (uint8 labels 0..5,
    255 = ignore). The output depends only on the arguments (same seed, same
    bytes); each split has its own random stream, so adding the test split
    left the train and val images unchanged.

    Val is for choices (variants, tuning), test for the reported numbers.

    Args:
        out_dir (str): Dataset root; created if missing.
        num_train (int): Training images.
        num_val (int): Validation images.
        size (int): Image side in pixels (>= 32).
        seed (int): Random seed.
        num_test (int): Test images (0: no test split).

    Returns:
        dict: Number of images written per split.
    """
    if size < 32:
        raise ValueError(f'size must be >= 32 pixels, got {size}')
    if num_train < 1 or num_val < 1 or num_test < 0:
        raise ValueError('num_train and num_val must be >= 1 and num_test '
                         f'>= 0, got {num_train}, {num_val}, {num_test}')
    return write_splits(out_dir,
                        dict(train=num_train, val=num_val, test=num_test),
                        seed, lambda rng: render_sample(size, rng))

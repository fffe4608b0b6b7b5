"""The datasets and train/val pipelines of the I2CKD configs read small
generated folders in the real Cityscapes / VOC-aug / ADE20K layouts.

Each test builds ``train_dataloader.dataset`` and ``val_dataloader.dataset``
of a config in configs/i2ckd/ with only ``data_root`` changed, fetches
items, and checks that the labels come out as that dataset's convention
says (Cityscapes trainIds as they are, VOC palette indices as they are,
ADE20K ``reduce_zero_label``: 0 -> 255, k -> k-1).
"""
import copy
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import i2ckd_mm  # noqa: F401
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

I2CKD = Path(__file__).resolve().parents[2] / 'configs' / 'i2ckd'
CITYSCAPES = I2CKD / ('i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_'
                      '8xb2-40k_cityscapes-512x1024.py')
VOC = I2CKD / ('i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_'
               '4xb4-40k_voc12aug-512x512.py')
ADE = I2CKD / ('i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_'
               '4xb4-80k_ade20k-512x512.py')


def _blocks(h, w, values, seed=0):
    """h x w label image of 8x8 blocks cycling through ``values``."""
    yy, xx = np.mgrid[0:h, 0:w]
    idx = ((yy // 8) * (w // 8) + xx // 8 + seed) % len(values)
    return np.asarray(values, dtype=np.uint8)[idx]


def _image(path: Path, h, w, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        path)


def _build(cfg_path: Path, loader: str, root: Path):
    cfg = Config.fromfile(str(cfg_path))
    ds_cfg = copy.deepcopy(cfg[loader].dataset)
    subsets = ds_cfg.datasets if ds_cfg.type == 'ConcatDataset' else [ds_cfg]
    for sub in subsets:
        sub.data_root = str(root)
    init_default_scope('mmseg')
    return DATASETS.build(ds_cfg)


def _gt(item) -> np.ndarray:
    return item['data_samples'].gt_sem_seg.data.numpy()[0]


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)


def test_cityscapes(tmp_path):
    """leftImg8bit/{split}/{city}/*_leftImg8bit.png paired with
    gtFine/{split}/{city}/*_gtFine_labelTrainIds.png (not labelIds)."""
    root = tmp_path / 'cityscapes'
    h, w = 64, 128  # real: 1024 x 2048
    train_ids = list(range(19)) + [255]
    labels = {}
    for split, city, frames in (('train', 'aachen', ['000000', '000001']),
                                ('val', 'frankfurt', ['000000'])):
        (root / 'leftImg8bit' / split / city).mkdir(parents=True)
        (root / 'gtFine' / split / city).mkdir(parents=True)
        for i, frame in enumerate(frames):
            stem = f'{city}_{frame}_000019'
            _image(root / 'leftImg8bit' / split / city /
                   f'{stem}_leftImg8bit.png', h, w, seed=i)
            lab = _blocks(h, w, train_ids, seed=5 * i)
            Image.fromarray(lab).save(root / 'gtFine' / split / city /
                                      f'{stem}_gtFine_labelTrainIds.png')
            # the other gtFine files of the real layout must be ignored
            Image.fromarray(np.full((h, w), 26, np.uint8)).save(
                root / 'gtFine' / split / city / f'{stem}_gtFine_labelIds.png')
            labels[(split, stem)] = lab

    train = _build(CITYSCAPES, 'train_dataloader', root)
    assert len(train) == 2
    for i in range(2):
        gt = _gt(train[i])
        assert gt.shape == (512, 1024)  # RandomCrop of the upscaled image
        assert set(np.unique(gt)) <= set(train_ids)  # never labelIds' 26
        assert train.get_data_info(i)['seg_map_path'].endswith(
            '_gtFine_labelTrainIds.png')

    val = _build(CITYSCAPES, 'val_dataloader', root)
    assert len(val) == 1
    item = val[0]
    assert item['inputs'].shape == (3, 1024, 2048)  # Resize to 2048x1024
    # trainIds are used as they are, at the original size
    np.testing.assert_array_equal(
        _gt(item), labels[('val', 'frankfurt_000000_000019')])


def _voc_palette():
    return [c for rgb in PascalVOCDataset.METAINFO['palette'] for c in rgb]


def test_voc_aug(tmp_path):
    """JPEGImages + SegmentationClass (palette PNG) + SegmentationClassAug
    (grey PNG) + ImageSets/Segmentation/{train,aug,val}.txt."""
    root = tmp_path / 'VOCdevkit' / 'VOC2012'
    h, w = 64, 96
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True)
    names = ['2007_000032', '2007_000039', '2007_000063', '2008_000008']
    labels = {}
    for i, name in enumerate(names):
        _image(root / 'JPEGImages' / f'{name}.jpg', h, w, seed=i)
        # object classes with the 255 "boundary" of the real annotations
        lab = _blocks(h, w, [0, 15, 255, 1 + i, 20], seed=i)
        labels[name] = lab
        pal = Image.fromarray(lab, mode='P')
        pal.putpalette(_voc_palette())
        pal.save(root / 'SegmentationClass' / f'{name}.png')
        Image.fromarray(lab, mode='L').save(
            root / 'SegmentationClassAug' / f'{name}.png')
    sets = root / 'ImageSets' / 'Segmentation'
    (sets / 'train.txt').write_text('\n'.join(names[:2]) + '\n')
    (sets / 'aug.txt').write_text('\n'.join(names[1:]) + '\n')
    (sets / 'val.txt').write_text(names[3] + '\n')

    train = _build(VOC, 'train_dataloader', root)
    assert len(train) == 2 + 3  # train.txt + aug.txt (ConcatDataset)
    for i in (0, 4):
        gt = _gt(train[i])
        assert gt.shape == (512, 512)  # RandomCrop + Pad to the crop
        assert set(np.unique(gt)) <= {0, 15, 255, 1, 2, 3, 4, 20}
    # the aug subset reads SegmentationClassAug
    assert train.datasets[1].get_data_info(0)['seg_map_path'].endswith(
        'SegmentationClassAug/2007_000039.png')

    val = _build(VOC, 'val_dataloader', root)
    assert len(val) == 1
    item = val[0]
    assert item['inputs'].shape == (3, 512, 768)  # Resize to fit 2048x512
    # palette PNG: the indices are the labels, unchanged
    np.testing.assert_array_equal(_gt(item), labels[names[3]])


def test_ade20k_reduce_zero_label(tmp_path):
    """images/{training,validation}/*.jpg + annotations/*/*.png with
    0 = "other" -> 255 and class k (1..150) -> k-1."""
    root = tmp_path / 'ade' / 'ADEChallengeData2016'
    h, w = 64, 80
    raw_values = [0, 1, 2, 77, 150]
    labels = {}
    for split, names in (('training', ['ADE_train_00000001',
                                       'ADE_train_00000002']),
                         ('validation', ['ADE_val_00000001'])):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i, name in enumerate(names):
            _image(root / 'images' / split / f'{name}.jpg', h, w, seed=i)
            lab = _blocks(h, w, raw_values, seed=i)
            Image.fromarray(lab).save(root / 'annotations' / split /
                                      f'{name}.png')
            labels[name] = lab

    train = _build(ADE, 'train_dataloader', root)
    assert len(train) == 2
    for i in range(2):
        gt = _gt(train[i])
        assert set(np.unique(gt)) <= {255, 0, 1, 76, 149}
        assert 150 not in gt

    val = _build(ADE, 'val_dataloader', root)
    item = val[0]
    expected = labels['ADE_val_00000001'].astype(np.int64) - 1
    expected[labels['ADE_val_00000001'] == 0] = 255
    np.testing.assert_array_equal(_gt(item), expected)

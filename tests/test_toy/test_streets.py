"""ToyStreets (tools/toy/streets.py): layout, determinism, the properties
that make it a proxy different in kind from ToyShapes (many imbalanced
classes, thin and small objects, wide images), and the dataset class."""
import filecmp
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from i2ckd_mm.datasets.toy import TOY_STREETS_CLASSES
from toy import make_toy_streets
from toy.streets import render_street

K = len(TOY_STREETS_CLASSES)
C = {n: i for i, n in enumerate(TOY_STREETS_CLASSES)}


@pytest.fixture(scope='module')
def sample_labels():
    rng = np.random.default_rng(0)
    return [render_street(128, 256, rng)[1] for _ in range(40)]


def test_layout_and_splits(tmp_path):
    root = str(tmp_path / 's')
    counts = make_toy_streets(root, num_train=3, num_val=2, seed=1,
                              num_test=2)
    assert counts == dict(train=3, val=2, test=2)
    for split, n in counts.items():
        names = sorted(os.listdir(osp.join(root, 'img_dir', split)))
        assert names == [f'{i:05d}.png' for i in range(n)]
        for name in names:
            img = cv2.imread(osp.join(root, 'img_dir', split, name))
            ann = cv2.imread(osp.join(root, 'ann_dir', split, name),
                             cv2.IMREAD_UNCHANGED)
            assert img.shape == (128, 256, 3) and ann.shape == (128, 256)
            assert set(np.unique(ann)) <= set(range(K)) | {255}
    # val and test are different images (no leak between the splits)
    for name in ('00000.png', '00001.png'):
        assert not filecmp.cmp(osp.join(root, 'img_dir', 'val', name),
                               osp.join(root, 'img_dir', 'test', name),
                               shallow=False)


def test_same_seed_same_bytes_and_independent_splits(tmp_path):
    a, b, c = (str(tmp_path / x) for x in 'abc')
    make_toy_streets(a, 2, 2, seed=4, num_test=2)
    make_toy_streets(b, 2, 2, seed=4, num_test=0)  # no test split
    make_toy_streets(c, 2, 2, seed=5, num_test=2)
    for split in ('train', 'val'):
        d = osp.join('img_dir', split)
        names = sorted(os.listdir(osp.join(a, d)))
        _, mismatch, err = filecmp.cmpfiles(osp.join(a, d), osp.join(b, d),
                                            names, shallow=False)
        assert not mismatch and not err  # adding test changed nothing
        _, mismatch, _ = filecmp.cmpfiles(osp.join(a, d), osp.join(c, d),
                                          names, shallow=False)
        assert mismatch == names  # another seed, other images
    assert not osp.isdir(osp.join(b, 'img_dir', 'test'))


def test_many_classes_with_strong_imbalance(sample_labels):
    counts = np.bincount(np.concatenate([lab.ravel() for lab in
                                         sample_labels]), minlength=256)
    freq = counts[:K] / counts[:K].sum()
    assert K >= 12 and (freq > 0).all(), freq  # every class occurs
    # a few classes cover most pixels, the small ones a fraction of a
    # percent: a max/min frequency ratio of more than 100
    assert freq.max() / freq.min() > 100
    for small in ('pole', 'traffic light', 'traffic sign', 'bicycle'):
        assert freq[C[small]] < 0.01, (small, freq[C[small]])
    assert freq[C['road']] + freq[C['building']] + freq[C['sky']] > 0.4


def test_thin_and_small_objects(sample_labels):
    """Poles are 1-2 pixels wide; lights and signs a few pixels."""
    widths, sizes = [], []
    for lab in sample_labels:
        pole = (lab == C['pole']).astype(np.uint8)
        rows = pole.sum(1)
        widths += list(rows[rows > 0])
        for cls in ('traffic light', 'traffic sign'):
            n, _, stats, _ = cv2.connectedComponentsWithStats(
                (lab == C[cls]).astype(np.uint8))
            sizes += list(stats[1:, cv2.CC_STAT_AREA])
    assert widths and sizes
    assert np.median(widths) <= 2
    assert np.median(sizes) <= 40


def test_ego_vehicle_is_ignored(sample_labels):
    for lab in sample_labels:
        assert (lab[-1] == 255).all()  # the bottom row: bonnet
        # nothing else is ignored: the top row is sky, buildings or trees
        assert set(np.unique(lab[0])) <= {C['sky'], C['building'],
                                          C['vegetation']}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='height and width must be >= 64'):
        make_toy_streets(str(tmp_path), height=32)
    with pytest.raises(ValueError, match='num_train and num_val'):
        make_toy_streets(str(tmp_path), num_train=0)


def test_dataset_class_reads_the_files(tmp_path):
    import i2ckd_mm  # noqa: F401
    from mmseg.registry import DATASETS
    root = str(tmp_path / 's')
    make_toy_streets(root, 2, 1, seed=0, num_test=1)
    ds = DATASETS.build(
        dict(type='ToyStreetsDataset', data_root=root,
             data_prefix=dict(img_path='img_dir/test',
                              seg_map_path='ann_dir/test'),
             pipeline=[]))
    assert len(ds) == 1
    assert ds.metainfo['classes'] == TOY_STREETS_CLASSES
    assert len(ds.metainfo['palette']) == K
    assert ds[0]['seg_map_path'].endswith(osp.join('ann_dir', 'test',
                                                   '00000.png'))

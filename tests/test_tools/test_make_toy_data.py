"""tools/make_toy_data.py + ToyShapesDataset: layout, content, determinism."""
import filecmp
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from tool_helpers import TOOLS, run_tool


def _files(root, kind, split):
    return sorted(os.listdir(osp.join(root, kind, split)))


def test_tool_writes_mmseg_layout(tmp_path):
    out = str(tmp_path / 'toy')
    proc = run_tool([
        osp.join(TOOLS, 'make_toy_data.py'), '--out', out, '--num-train',
        '6', '--num-val', '3', '--num-test', '2', '--size', '48', '--seed',
        '1'
    ])
    assert "{'train': 6, 'val': 3, 'test': 2}" in proc.stdout
    for split, n in (('train', 6), ('val', 3), ('test', 2)):
        names = [f'{i:05d}.png' for i in range(n)]
        assert _files(out, 'img_dir', split) == names
        assert _files(out, 'ann_dir', split) == names
        for name in names:
            img = cv2.imread(osp.join(out, 'img_dir', split, name),
                             cv2.IMREAD_UNCHANGED)
            ann = cv2.imread(osp.join(out, 'ann_dir', split, name),
                             cv2.IMREAD_UNCHANGED)
            assert img.shape == (48, 48, 3) and img.dtype == np.uint8
            assert ann.shape == (48, 48) and ann.dtype == np.uint8
            assert set(np.unique(ann)) <= {0, 1, 2, 3, 4, 5, 255}
            # every image has background, >= 1 shape and ignored edges
            assert 0 in ann and 255 in ann and (ann[ann != 255] > 0).any()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    from toy import make_toy_shapes
    a, b, c, d = (str(tmp_path / x) for x in 'abcd')
    make_toy_shapes(a, 4, 2, 64, seed=5)
    make_toy_shapes(b, 4, 2, 64, seed=5)
    make_toy_shapes(c, 4, 2, 64, seed=6)
    make_toy_shapes(d, 7, 2, 64, seed=5)  # more train images
    for kind in ('img_dir', 'ann_dir'):
        for split in ('train', 'val', 'test'):
            names = _files(a, kind, split)
            _, mismatch, errors = filecmp.cmpfiles(
                osp.join(a, kind, split), osp.join(b, kind, split), names,
                shallow=False)
            assert not mismatch and not errors
    other = [
        filecmp.cmp(
            osp.join(a, 'img_dir', 'train', n),
            osp.join(c, 'img_dir', 'train', n),
            shallow=False) for n in _files(a, 'img_dir', 'train')
    ]
    assert not any(other)
    # the val split does not depend on the number of train images
    _, mismatch, _ = filecmp.cmpfiles(
        osp.join(a, 'img_dir', 'val'), osp.join(d, 'img_dir', 'val'),
        _files(a, 'img_dir', 'val'), shallow=False)
    assert not mismatch


def test_colour_does_not_give_the_class(tmp_path):
    """Every shape class is drawn in several of the shared colours: the
    class must come from the shape, not the colour."""
    from toy.shapes import _OBJECT_COLOURS, make_toy_shapes
    root = str(tmp_path / 'toy')
    make_toy_shapes(root, 40, 1, 64, seed=0)
    colours_per_class = {k: set() for k in range(1, 6)}
    for name in _files(root, 'img_dir', 'train'):
        img = cv2.imread(osp.join(root, 'img_dir', 'train', name))
        ann = cv2.imread(osp.join(root, 'ann_dir', 'train', name), 0)
        # erode each class region so stripes/noise average out per object
        for k in range(1, 6):
            mask = cv2.erode((ann == k).astype(np.uint8), np.ones((3, 3)))
            if mask.sum() < 10:
                continue
            mean = np.percentile(img[mask.astype(bool)], 90, axis=0)
            nearest = np.abs(_OBJECT_COLOURS - mean).sum(1).argmin()
            colours_per_class[k].add(int(nearest))
    assert all(len(v) >= 3 for v in colours_per_class.values()), \
        colours_per_class


def test_bad_arguments_are_rejected(tmp_path):
    from toy import make_toy_shapes
    with pytest.raises(ValueError, match='size must be >= 32'):
        make_toy_shapes(str(tmp_path), 2, 2, size=16)
    with pytest.raises(ValueError, match='num_train and num_val'):
        make_toy_shapes(str(tmp_path), 0, 2)


def test_toy_dataset_reads_the_files(toy_root):
    import i2ckd_mm  # noqa: F401
    from mmseg.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    ds = DATASETS.build(
        dict(
            type='ToyShapesDataset',
            data_root=toy_root,
            data_prefix=dict(
                img_path='img_dir/val', seg_map_path='ann_dir/val'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations')
            ]))
    assert len(ds) == 2
    assert ds.metainfo['classes'] == ('background', 'disk', 'ring',
                                      'square', 'triangle', 'cross')
    assert len(ds.metainfo['palette']) == 6
    sample = ds[1]
    assert sample['img_path'].endswith(osp.join('img_dir', 'val',
                                                '00001.png'))
    ann = cv2.imread(
        osp.join(toy_root, 'ann_dir', 'val', '00001.png'),
        cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(sample['gt_seg_map'], ann)
    assert sample['img'].shape == (64, 64, 3)


def test_toy_configs_resolve_to_the_right_roles():
    from mmengine.config import Config

    from toy import toy_configs
    # role -> the loss types of its distiller (None: a plain segmentor)
    losses = {'teacher': None, 'student': None,
              'i2ckd': ['I2CKDLoss'],
              'i2ckd_cwd': ['I2CKDLoss', 'ChannelWiseDivergence'],
              'kd': ['KLDivergence'],
              'i2ckd_kd': ['I2CKDLoss', 'KLDivergence'],
              'dist': ['DISTLoss'],
              'i2ckd_dist': ['I2CKDLoss', 'DISTLoss'],
              'mgd': ['MGDLoss'],
              'i2ckd_mgd': ['I2CKDLoss', 'MGDLoss'],
              'cwd': ['ChannelWiseDivergence']}
    for dataset in ('toyshapes', 'toystreets'):
        paths = toy_configs(dataset)
        assert set(paths) == set(losses)
        for role, path in paths.items():
            assert dataset in osp.basename(path), (role, path)
            model = Config.fromfile(path).model
            if losses[role] is None:
                assert model.type == 'EncoderDecoder', role
            else:
                assert model.type == 'I2CKDDistill', role
                assert sorted(loss.type for loss in
                              model.distiller.distill_losses.values()) == \
                    sorted(losses[role]), role

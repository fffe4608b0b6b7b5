"""The "distill on your own dataset" template trains 2 iterations on a small
generated dataset whose class count (9) differs from ToyShapes (6), with
num_classes written only as the template's `classes`."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import i2ckd_mm  # noqa: F401

TEMPLATE = (Path(__file__).resolve().parents[2] / 'configs' / '_base_' /
            'i2ckd' / 'custom_dataset_template.py')
CLASSES = tuple(f'class{i}' for i in range(9))


def _write_data(root: Path, n=4, size=64):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        (root / 'img_dir' / split).mkdir(parents=True)
        (root / 'ann_dir' / split).mkdir(parents=True)
        for i in range(n):
            label = np.zeros((size, size), np.uint8)
            for k in range(9):  # a band per class: all 9 classes present
                label[:, k * size // 9:(k + 1) * size // 9] = k
            label[:2] = 255  # ignored
            img = rng.integers(0, 256, (size, size, 3), np.uint8)
            img[..., 0] = label * 25  # classes are visible in the image
            Image.fromarray(img).save(root / 'img_dir' / split / f'{i}.jpg')
            Image.fromarray(label).save(root / 'ann_dir' / split / f'{i}.png')


def test_template_trains_two_iterations_on_9_classes(tmp_path):
    _write_data(tmp_path / 'data')
    cfg = Config.fromfile(str(TEMPLATE))
    # what a user edits: classes, palette, data_root, teacher checkpoint;
    # and, for a CPU test, smaller crops/scales and no downloads
    cfg.merge_from_dict({
        'model.architecture.pretrained': None,
        'model.teacher_ckpt': None,
        'model.architecture.data_preprocessor.size': (64, 64),
        'model.teacher.data_preprocessor.size': (64, 64),
        'data_preprocessor.size': (64, 64),
    })
    for dl in (cfg.train_dataloader, cfg.val_dataloader):
        dl.dataset.data_root = str(tmp_path / 'data')
        dl.dataset.metainfo = dict(classes=CLASSES,
                                   palette=[[k * 20] * 3 for k in range(9)])
        dl.num_workers, dl.persistent_workers = 0, False
        for t in dl.dataset.pipeline:
            if t.type in ('RandomResize', 'Resize'):
                t.scale = (64, 64)
            if t.type == 'RandomCrop':
                t.crop_size = (64, 64)
    cfg.train_dataloader.batch_size = 2
    # num_classes once: the template's heads take len(classes)
    for m in (cfg.model.architecture, cfg.model.teacher):
        for h in (m.decode_head, m.auxiliary_head):
            h.num_classes = len(CLASSES)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.pop('visualization', None)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.randomness = dict(seed=0)
    with pytest.warns(UserWarning, match='no teacher_ckpt'):
        runner = Runner.from_cfg(cfg)
    model = runner.model
    loss = model.distiller.distill_losses['loss_i2ckd']
    assert loss.num_classes == 9 == len(runner.train_dataloader.dataset
                                        .metainfo['classes'])
    seen = []
    orig = loss.forward

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        seen.append((out.detach(), dict(loss.last_stats)))
        return out

    loss.forward = spy
    runner.train()
    assert len(seen) == 2
    for value, stats in seen:
        assert torch.isfinite(value) and value > 0
        assert stats['triplets'] > 0

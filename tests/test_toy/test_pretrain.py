"""tools/toy/pretrain.py: the ToyNet pretraining checkpoint is an MMSeg
``Pretrained`` checkpoint that the toy models really start from, read by
the package's weights-only loader."""
import numpy as np
import pytest
import torch
from mmengine.config import Config

import i2ckd_mm  # noqa: F401
import i2ckd_mm.checkpoint as ckpt_mod
from toy import toy_configs
from toy.pretrain import (PRETRAIN_STREAM, TOYNET_CLASSES,
                                   classification_backbone_cfg,
                                   pretrain_backbone, render_toynet)
from toy.shapes import SPLIT_STREAMS


@pytest.fixture(scope='module')
def student_ckpt(tmp_path_factory):
    """Two pretraining steps of the ToyShapes student's backbone."""
    cfg = Config.fromfile(toy_configs('toyshapes')['student'])
    path = str(tmp_path_factory.mktemp('pt') / 'student.pth')
    stats = pretrain_backbone(cfg.model.backbone.to_dict(), path, iters=2,
                              batch_size=4, size=32, eval_images=4,
                              log_every=0)
    assert 0 <= stats['eval_acc'] <= 100
    return path


def test_renderer_is_seeded_and_apart_from_the_splits():
    a = render_toynet(64, np.random.default_rng([5, PRETRAIN_STREAM]))
    b = render_toynet(64, np.random.default_rng([5, PRETRAIN_STREAM]))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert a[0].shape == (64, 64, 3) and a[0].dtype == np.uint8
    assert 0 <= a[1] < len(TOYNET_CLASSES)
    # its stream index is none of the segmentation splits'
    assert PRETRAIN_STREAM not in SPLIT_STREAMS.values()
    # every class renders a non-empty object
    rng = np.random.default_rng(0)
    seen = {render_toynet(48, rng)[1] for _ in range(200)}
    assert seen == set(range(len(TOYNET_CLASSES)))


def test_pretraining_net_has_imagenet_strides_and_the_same_weights():
    cfg = Config.fromfile(toy_configs('toyshapes')['student'])
    seg = cfg.model.backbone.to_dict()
    cls = classification_backbone_cfg(seg)
    assert cls['strides'] == (1, 2, 2, 2) and cls['dilations'] == (1,) * 4
    from mmseg.registry import MODELS
    a = MODELS.build(dict(seg, _scope_='mmseg')).state_dict()
    b = MODELS.build(cls).state_dict()
    assert {k: v.shape for k, v in a.items()} == \
        {k: v.shape for k, v in b.items()}


def _backbone_after_init(cfg_path, prefix, ckpt, monkeypatch):
    """Build the model of ``cfg_path`` with the backbone at ``prefix``
    starting from ``ckpt``, run init_weights(); return that backbone and how
    often the package's safe loader read ``ckpt``."""
    from mmengine.registry import init_default_scope
    from mmrazor.registry import MODELS as RAZOR
    from mmseg.registry import MODELS
    reads = []
    real = ckpt_mod.load_checkpoint_file

    def spy(path, *a, **k):
        reads.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(ckpt_mod, 'load_checkpoint_file', spy)
    cfg = Config.fromfile(cfg_path)
    opts = {f'{prefix}.backbone.init_cfg':
            dict(type='Pretrained', checkpoint=ckpt)}
    cfg.merge_from_dict(opts)
    torch.manual_seed(0)
    if prefix == 'model':
        init_default_scope('mmseg')
        model = MODELS.build(cfg.model)
        backbone = model.backbone
    else:
        init_default_scope('mmrazor')
        cfg.model.teacher_ckpt = None
        model = RAZOR.build(cfg.model)
        backbone = model.student.backbone
    model.init_weights()
    return backbone, [r for r in reads if r == ckpt]


@pytest.mark.parametrize('role,prefix', [('student', 'model'),
                                         ('i2ckd', 'model.architecture')])
def test_init_loads_the_pretrained_backbone(role, prefix, student_ckpt,
                                            monkeypatch):
    """After init_weights() every backbone tensor equals the checkpoint's
    (BN statistics too), read once through i2ckd_mm.checkpoint; without
    the init_cfg the same build gives other weights (the random init)."""
    saved = torch.load(student_ckpt, weights_only=True)['state_dict']
    cfg_path = toy_configs('toyshapes')[role]
    backbone, reads = _backbone_after_init(cfg_path, prefix, student_ckpt,
                                           monkeypatch)
    assert len(reads) == 1
    got = backbone.state_dict()
    assert set(got) == set(saved)
    for k, v in saved.items():
        assert torch.equal(got[k], v), k
    # the random init differs from the checkpoint
    from mmseg.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    cfg = Config.fromfile(toy_configs('toyshapes')['student'])
    torch.manual_seed(0)
    plain = MODELS.build(cfg.model)
    plain.init_weights()
    w = 'layer1.0.conv1.weight'
    assert not torch.equal(plain.backbone.state_dict()[w], saved[w])


def test_checkpoint_is_weights_only_with_its_meta(student_ckpt):
    obj = torch.load(student_ckpt, weights_only=True)
    assert obj['meta']['task'] == 'ToyNet classification'
    assert obj['meta']['iters'] == 2
    assert 'stem.0.weight' in obj['state_dict']  # the backbone's own keys

"""Every i2ckd_mm component registered anywhere builds from a config dict."""
import inspect

import pytest
import torch

import i2ckd_mm  # noqa: F401  (registers everything)
import mmengine.registry as mmengine_registry
import mmrazor.registry as mmrazor_registry
import mmseg.registry as mmseg_registry
from mmengine.config import ConfigDict
from mmengine.registry import Registry

BN = dict(type='BN', requires_grad=True)


def tiny_segmentor():
    return dict(
        type='mmseg.EncoderDecoder',
        data_preprocessor=dict(type='mmseg.SegDataPreProcessor',
                               size=(32, 32)),
        backbone=dict(
            type='mmseg.ResNetV1c', depth=18, stem_channels=8,
            base_channels=8, out_indices=(3, ), norm_cfg=BN),
        decode_head=dict(
            type='mmseg.FCNHead', in_channels=64, in_index=0, channels=8,
            num_convs=1, num_classes=3, norm_cfg=BN,
            loss_decode=dict(type='mmseg.CrossEntropyLoss')),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def distiller_cfg():
    feat = dict(type='ModuleOutputs', source='decode_head.convs')
    return dict(
        type='GTAwareDistiller',
        student_recorders=dict(feat=feat),
        teacher_recorders=dict(feat=feat),
        connectors=dict(c=dict(type='ConvModuleConnector', in_channel=8,
                               out_channel=8, kernel_size=1, act_cfg=None)),
        distill_losses=dict(loss_i2ckd=dict(type='I2CKDLoss', num_classes=3)),
        loss_forward_mappings=dict(
            loss_i2ckd=dict(
                preds_S=dict(from_student=True, recorder='feat',
                             connector='c'),
                preds_T=dict(from_student=False, recorder='feat'),
                gt=dict(from_data='gt_sem_seg'))))


# name -> (config, check of the built object); data_root filled in the test
BUILD_CFGS = {
    'I2CKDLoss': (dict(type='I2CKDLoss', num_classes=7, margin=0.3,
                       negatives='hardest'),
                  lambda m: (m.num_classes, m.margin, m.negatives) ==
                  (7, 0.3, 'hardest')),
    'I2CKDConnector': (dict(type='I2CKDConnector', in_channels=4,
                            out_channels=6, norm=True),
                       lambda m: tuple(m.conv_module.conv.weight.shape) ==
                       (6, 4, 1, 1)
                       and isinstance(m.conv_module.bn, torch.nn.BatchNorm2d)),
    'PixelRowsConnector': (dict(type='PixelRowsConnector'),
                           lambda m: torch.equal(
                               m(torch.arange(8.).view(1, 2, 2, 2)),
                               torch.tensor([[0., 4.], [1., 5.], [2., 6.],
                                             [3., 7.]]))),
    'GTAwareDistiller': (distiller_cfg(),
                         lambda m: set(m.distill_losses) == {'loss_i2ckd'}
                         and 'c' in m.connectors),
    'I2CKDDistill': (dict(type='I2CKDDistill', architecture=tiny_segmentor(),
                          teacher=tiny_segmentor(),
                          distiller=distiller_cfg()),
                     lambda m: not any(p.requires_grad
                                       for p in m.teacher.parameters())),
    'DistillLossWeightScheduleHook': (
        dict(type='DistillLossWeightScheduleHook',
             losses=dict(loss_i2ckd=dict(warmup_iters=10))),
        lambda h: 'loss_i2ckd' in h.schedules),
    'PrototypeVisHook': (
        dict(type='PrototypeVisHook', interval=7, loss_name='loss_i2ckd'),
        lambda h: (h.interval, h.loss_name) == (7, 'loss_i2ckd')),
    'CamVidDataset': (dict(type='CamVidDataset', lazy_init=True),
                      lambda d: len(d.metainfo['classes']) == 11),
    'ToyShapesDataset': (dict(type='ToyShapesDataset', lazy_init=True),
                         lambda d: len(d.metainfo['classes']) > 1),
    'ToyStreetsDataset': (dict(type='ToyStreetsDataset', lazy_init=True),
                          lambda d: len(d.metainfo['classes']) > 1),
    'ClassIoUMetric': (dict(type='ClassIoUMetric', iou_metrics=['mFscore'],
                            ignore_index=7),
                       lambda m: (m.metrics, m.ignore_index) ==
                       (['mFscore'], 7)),
}


def registered_components():
    """(registry, name, class) of every i2ckd_mm class in any registry."""
    found = {}
    for module in (mmrazor_registry, mmseg_registry, mmengine_registry):
        for attr in dir(module):
            reg = getattr(module, attr)
            if not isinstance(reg, Registry):
                continue
            for name, obj in reg.module_dict.items():
                if inspect.getmodule(obj).__name__.startswith('i2ckd_mm'):
                    found[(module.__name__, attr, name)] = (reg, obj)
    return found


COMPONENTS = registered_components()


def test_the_core_components_are_registered():
    names = {name for (_, _, name) in COMPONENTS}
    assert {'I2CKDLoss', 'I2CKDConnector', 'GTAwareDistiller',
            'I2CKDDistill'} <= names
    # models/connectors/hooks in MMRazor's registries, datasets and
    # metrics in MMSeg's
    for (pkg, reg, name) in COMPONENTS:
        if name.endswith('Dataset'):
            assert (pkg, reg) == ('mmseg.registry', 'DATASETS'), name
        elif name.endswith('Metric'):
            assert (pkg, reg) == ('mmseg.registry', 'METRICS'), name
        else:
            assert pkg == 'mmrazor.registry', name


@pytest.mark.parametrize('key', sorted(COMPONENTS), ids=lambda k: k[2])
def test_every_component_builds_from_a_config_dict(key, tmp_path):
    reg, cls = COMPONENTS[key]
    name = key[2]
    assert name in BUILD_CFGS, (
        f'{name} is registered in {key[0]}.{key[1]} but has no build config '
        'in tests/test_registry.py: add one')
    cfg, check = BUILD_CFGS[name]
    cfg = ConfigDict(cfg)
    if name.endswith('Dataset'):
        cfg.data_root = str(tmp_path)
    obj = reg.build(cfg)
    assert type(obj) is cls
    assert check(obj)

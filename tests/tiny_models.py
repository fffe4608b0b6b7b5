"""Tiny MMSeg segmentors, I2CKDDistill configs and random batches shared by
the tests (CPU-sized: ResNetV1c-18 a few channels wide, 32x32 inputs).

Importable from any test module as ``from tiny_models import ...``:
tests/conftest.py puts this folder on ``sys.path``. Every builder returns a
fresh config, so tests may edit what they get.
"""
import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmrazor.registry import MODELS
from mmseg.structures import SegDataSample

NUM_CLASSES = 4


def tiny_segmentor(width=8, num_classes=NUM_CLASSES, size=32, norm='BN',
                   head='fcn', dropout_ratio=0.0, contract_dilation=True,
                   mean=(0., 0., 0.), std=(1., 1., 1.)):
    """An MMSeg EncoderDecoder config: ResNetV1c-18-D8 ``width`` channels
    wide (output 8 * width channels at 1/8 of ``size``), then either

    - ``head='fcn'``: an FCNHead, one conv to 2 * width channels
      (``decode_head.convs``), or
    - ``head='aspp'``: an ASPPHead with dilations (1, 2) and width channels
      (``decode_head.bottleneck``).

    ``norm`` is the norm type of backbone and head ('BN' or 'SyncBN');
    ``mean``/``std`` normalise the uint8 inputs in the data preprocessor,
    which pads/crops to ``size`` x ``size``.
    """
    norm_cfg = dict(type=norm, requires_grad=True)
    if head == 'fcn':
        decode_head = dict(
            type='FCNHead', in_channels=8 * width, in_index=0,
            channels=2 * width, num_convs=1, concat_input=False,
            dropout_ratio=dropout_ratio, num_classes=num_classes,
            norm_cfg=norm_cfg, align_corners=False)
    elif head == 'aspp':
        decode_head = dict(
            type='ASPPHead', in_channels=8 * width, in_index=0,
            channels=width, dilations=(1, 2), dropout_ratio=dropout_ratio,
            num_classes=num_classes, norm_cfg=norm_cfg, align_corners=False)
    else:
        raise ValueError(f'head must be fcn or aspp, not {head!r}')
    return dict(
        _scope_='mmseg',
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=list(mean), std=list(std),
            size=(size, size), pad_val=0, seg_pad_val=255),
        backbone=dict(
            type='ResNetV1c', depth=18, base_channels=width,
            stem_channels=width, num_stages=4, out_indices=(3, ),
            dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=norm_cfg,
            contract_dilation=contract_dilation),
        decode_head=decode_head,
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def tiny_distill_cfg(student=None, teacher=None, num_classes=NUM_CLASSES,
                     source='decode_head.convs', connector=(16, 32),
                     connector_norm=False, loss=None, **overrides):
    """An I2CKDDistill ConfigDict: GTAwareDistiller recording ``source`` in
    both models, I2CKDLoss(num_classes, **loss) on (connector(student
    feature), teacher feature, gt_sem_seg).

    Defaults: student ``tiny_segmentor(8)``, teacher ``tiny_segmentor(16)``
    (FCN features of 16 / 32 channels) and the shipped configs' connector
    (MMRazor's ConvModuleConnector: 1x1 conv, no activation, BN with
    ``connector_norm``) ``connector=(in_channels, out_channels)`` between
    them; with
    ``connector=None`` the student feature goes to the loss as it is.
    ``overrides`` are further keys of the algorithm (teacher_ckpt, ...).
    """
    if student is None:
        student = tiny_segmentor(8, num_classes)
    if teacher is None:
        teacher = tiny_segmentor(16, num_classes)
    feat = dict(type='ModuleOutputs', source=source)
    preds_s = dict(from_student=True, recorder='feat')
    distiller = dict(
        type='GTAwareDistiller',
        student_recorders=dict(feat=dict(feat)),
        teacher_recorders=dict(feat=dict(feat)),
        distill_losses=dict(loss_i2ckd=dict(
            type='I2CKDLoss', num_classes=num_classes, **(loss or {}))),
        loss_forward_mappings=dict(loss_i2ckd=dict(
            preds_S=preds_s,
            preds_T=dict(from_student=False, recorder='feat'),
            gt=dict(from_data='gt_sem_seg'))))
    if connector is not None:
        in_channels, out_channels = connector
        distiller['connectors'] = dict(sfeat=dict(
            type='ConvModuleConnector', in_channel=in_channels,
            out_channel=out_channels, kernel_size=1, act_cfg=None,
            norm_cfg=dict(type='BN') if connector_norm else None))
        preds_s['connector'] = 'sfeat'
    return ConfigDict(
        type='I2CKDDistill', architecture=student, teacher=teacher,
        distiller=distiller, **overrides)


def tiny_distill(**kwargs):
    """``tiny_distill_cfg(**kwargs)`` built (MMRazor's MODELS)."""
    return MODELS.build(tiny_distill_cfg(**kwargs))


def make_seg_batch(n=2, size=32, num_classes=NUM_CLASSES, seed=0,
                   labels_first=False, ignore_rows=0, metainfo=False):
    """A raw batch (``inputs``: uint8 3 x size x size images,
    ``data_samples``: labels in [0, num_classes)) from a generator seeded
    with ``seed``: the n images are drawn first, then the n label maps, or
    the other way round with ``labels_first``. The first ``ignore_rows``
    rows of each label map are 255 (ignore); ``metainfo`` sets img_shape and
    ori_shape on the samples."""
    g = torch.Generator().manual_seed(seed)

    def images():
        return [
            torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                          generator=g) for _ in range(n)
        ]

    def labels():
        out = []
        for _ in range(n):
            gt = torch.randint(0, num_classes, (1, size, size), generator=g)
            gt[:, :ignore_rows] = 255
            out.append(gt)
        return out

    if labels_first:
        gts = labels()
        inputs = images()
    else:
        inputs = images()
        gts = labels()
    samples = []
    for gt in gts:
        s = SegDataSample(gt_sem_seg=PixelData(data=gt))
        if metainfo:
            s.set_metainfo(dict(img_shape=(size, size),
                                ori_shape=(size, size)))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)

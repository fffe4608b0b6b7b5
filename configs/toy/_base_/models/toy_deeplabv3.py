# DeepLabV3 teacher and student for the ToyShapes CPU demo.
# Same structure as mmseg::_base_/models/deeplabv3_r50-d8.py (ResNetV1c-D8 +
# ASPPHead + FCN auxiliary head), at toy size. Written out here (instead of
# inheriting that file) because a distillation config needs the teacher and
# the student side by side, and an MMEngine config can inherit only one
# `model`. CPU changes: BN instead of SyncBN, no ImageNet init, inputs padded
# to 64x64 (the crop) instead of 512x1024.
norm_cfg = dict(type='BN', requires_grad=True)
# (MMEngine's Runner also hands this top-level `data_preprocessor` to a
# distillation algorithm, built in MMRazor's registry: hence the scope)
data_preprocessor = dict(
    _scope_='mmseg',
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(64, 64))
num_classes = 6


def _deeplabv3(base_channels, head_channels, aux_channels):

    def head(loss_weight, **kwargs):
        # what the decode and the auxiliary head share
        return dict(
            **kwargs,
            dropout_ratio=0.1,
            num_classes=num_classes,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss',
                use_sigmoid=False,
                loss_weight=loss_weight))

    return dict(
        # explicit scope: the distillation configs build these inside
        # MMRazor's registry, which does not hold MMSeg's segmentors
        _scope_='mmseg',
        type='EncoderDecoder',
        data_preprocessor=data_preprocessor,
        pretrained=None,
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=base_channels,
            base_channels=base_channels,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            contract_dilation=True),
        decode_head=head(
            type='ASPPHead',
            in_channels=base_channels * 8,
            in_index=3,
            channels=head_channels,
            dilations=(1, 12, 24, 36),
            loss_weight=1.0),
        auxiliary_head=head(
            type='FCNHead',
            in_channels=base_channels * 4,
            in_index=2,
            channels=aux_channels,
            num_convs=1,
            concat_input=False,
            loss_weight=0.4),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


# Teacher: ResNetV1c-18 at 1/2 width (256-channel stage 4), ASPP 128 ch.
teacher_model = _deeplabv3(base_channels=32, head_channels=128,
                           aux_channels=64)
# Student: ResNetV1c-18 at 1/4 width (base_channels 16), ASPP 32 ch.
student_model = _deeplabv3(base_channels=16, head_channels=32,
                           aux_channels=16)
del _deeplabv3
# Each toy config sets its model: the teacher, the student, or a distillation
# algorithm around both (whose shared block replaces this with `_delete_`).
model = dict()

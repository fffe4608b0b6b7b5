# Plain MMSeg recipe of the CamVid TEACHER (DeepLabV3 R101-D8, 11 classes).
# MMSeg publishes no CamVid model, so train this first, e.g.
#   python tools/train.py \
#       configs/i2ckd/baselines/deeplabv3_r101-d8_4xb4-40k_camvid-360x360.py
# and pass the resulting checkpoint to the CamVid I2CKD config (its README).
# Built like MMSeg's deeplabv3_r50-d8_4xb4-40k_voc12aug-512x512.py (+ the
# R101 override of MMSeg's R101 recipes), with our CamVid dataset base.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    '../../_base_/datasets/camvid.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
crop_size = (360, 360)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=dict(num_classes=11),
    auxiliary_head=dict(num_classes=11))

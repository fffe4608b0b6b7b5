# Plain MMSeg recipe of the Pascal VOC aug STUDENT baseline (DeepLabV3
# R18-D8). MMSeg has R18 recipes for Cityscapes only: this is MMSeg's VOC-aug
# recipe with exactly the overrides of its
# deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-40k_voc12aug-512x512.py'
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))

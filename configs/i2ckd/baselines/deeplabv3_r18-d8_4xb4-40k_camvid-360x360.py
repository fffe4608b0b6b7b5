# Plain MMSeg recipe of the CamVid STUDENT baseline (DeepLabV3 R18-D8): the
# teacher recipe with exactly the overrides of MMSeg's
# deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py.
_base_ = './deeplabv3_r101-d8_4xb4-40k_camvid-360x360.py'
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))

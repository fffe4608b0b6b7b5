# I2CKD at two feature locations: the ASPP bottleneck and the last backbone
# stage (configs/_base_/i2ckd/i2ckd_layer4.py). On our toy proxies it beat
# the one-location variant (benchmarks/accuracy_study.md, arm np_2loc vs np:
# +1.69 mIoU [+1.06, +2.32] on ToyStreets test, +0.72 [-0.49, +1.93], tied,
# on ToyShapes). Not measured on Cityscapes. Everything else is the
# one-location Cityscapes config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/i2ckd_layer4.py'
]
model = dict(distiller=_base_.i2ckd_layer4)
# layer4: 512 channels in ResNetV1c-18 -> 2048 in ResNetV1c-101
model['distiller'].connectors.loss_i2ckd4_sfeat.update(
    in_channel=512, out_channel=2048)

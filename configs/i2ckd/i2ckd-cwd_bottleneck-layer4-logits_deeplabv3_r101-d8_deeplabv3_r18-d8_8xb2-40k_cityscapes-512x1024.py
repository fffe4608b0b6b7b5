# I2CKD at two feature locations (the ASPP bottleneck and the last backbone
# stage, configs/_base_/i2ckd/i2ckd_layer4.py) + logit distillation
# (MMRazor's ChannelWiseDivergence): the combination our toy study chose on
# val and found best on top of CWD (benchmarks/accuracy_study.md: +0.98 mIoU
# over CWD alone on ToyStreets test, tied on ToyShapes). Not measured on
# Cityscapes. Everything else is the I2CKD + CWD Cityscapes config.
_base_ = [
    './i2ckd-cwd_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/i2ckd_layer4.py'
]
model = dict(distiller=_base_.i2ckd_layer4)
# layer4: 512 channels in ResNetV1c-18 -> 2048 in ResNetV1c-101
model['distiller'].connectors.loss_i2ckd4_sfeat.update(
    in_channel=512, out_channel=2048)

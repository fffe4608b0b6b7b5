# I2CKD at two feature locations (the ASPP bottleneck and the last backbone
# stage) + logit distillation (MMRazor's ChannelWiseDivergence,
# configs/_base_/i2ckd/cwd_logits.py): the combination our toy study chose
# on val and found best on top of CWD (benchmarks/accuracy_study.md: +0.98
# mIoU over CWD alone on ToyStreets test, tied on ToyShapes). Not measured
# on Cityscapes. Everything else is the two-location I2CKD config.
_base_ = [
    './i2ckd_bottleneck-layer4_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/cwd_logits.py'
]
model = dict(distiller=_base_.cwd)

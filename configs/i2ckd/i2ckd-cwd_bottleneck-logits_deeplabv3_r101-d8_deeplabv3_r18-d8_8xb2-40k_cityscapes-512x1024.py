# I2CKD + logit distillation (MMRazor's ChannelWiseDivergence,
# configs/_base_/i2ckd/cwd_logits.py), to test the claim that I2CKD improves
# an existing distillation method. Everything else is the I2CKD-only
# Cityscapes config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/cwd_logits.py'
]
model = dict(distiller=_base_.cwd)

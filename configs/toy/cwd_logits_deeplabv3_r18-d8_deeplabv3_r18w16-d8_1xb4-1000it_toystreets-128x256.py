# CWD logit distillation alone on the ToyStreets CPU proxy (MMRazor's
# ChannelWiseDivergence, weight 3 as set there): the I2CKD + CWD config
# (i2ckd-cwd_bottleneck-logits_*) without its I2CKD term, so that the two
# differ only in I2CKD.
_base_ = [
    './i2ckd-cwd_bottleneck-logits_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb4-1000it_toystreets-128x256.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.cwd))

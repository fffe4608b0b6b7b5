# I2CKD + logit distillation (MMRazor's ChannelWiseDivergence on the
# classifier logits, configs/toy/_base_/toy_cwd_logits.py) on the ToyStreets CPU proxy.
# Everything else as in the I2CKD-only config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb4-1000it_toystreets-128x256.py',  # noqa: E501
    './_base_/toy_cwd_logits.py'
]
model = dict(distiller={{_base_.cwd_distiller}})

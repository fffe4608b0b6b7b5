# I2CKD + logit distillation on the ToyStreets CPU proxy: MMRazor's
# ChannelWiseDivergence on the classifier logits
# (configs/_base_/i2ckd/cwd_logits.py) at loss weight 3, the low end of
# MMRazor's CWD range (3-5). Everything else as in the I2CKD-only config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb4-1000it_toystreets-128x256.py',  # noqa: E501
    '../_base_/i2ckd/cwd_logits.py'
]
model = dict(distiller=_base_.cwd)
model['distiller'].distill_losses.loss_cwd.loss_weight = 3

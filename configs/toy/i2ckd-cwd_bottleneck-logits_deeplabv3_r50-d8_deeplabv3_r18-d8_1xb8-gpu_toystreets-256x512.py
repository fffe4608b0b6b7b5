# GPU study, I2CKD + MMRazor's ChannelWiseDivergence on the logits (weight 3,
# as the CPU toy configs); everything else as the I2CKD-only GPU config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r50-d8_deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py',  # noqa: E501
    '../_base_/i2ckd/cwd_logits.py'
]
model = dict(distiller=_base_.cwd)
model['distiller'].distill_losses.loss_cwd.loss_weight = 3

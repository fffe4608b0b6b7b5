# CWD logit distillation alone (MMRazor's ChannelWiseDivergence, tau 1,
# weight 5: configs/_base_/i2ckd/cwd_logits.py): the I2CKD + CWD config
# (i2ckd-cwd_bottleneck-logits_*) without its I2CKD term. Same teacher,
# student, data, schedule, algorithm and CWD settings, so that the two
# differ only in I2CKD.
_base_ = [
    './i2ckd-cwd_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.cwd))

# Vanilla logit KD alone: the I2CKD + KD config
# (i2ckd-kd_bottleneck-logits_*) without its I2CKD term. Same teacher,
# student, data, schedule, algorithm and KD settings, so that the two differ
# only in I2CKD. (`_base_.kd` is the KD block as that config set it.)
_base_ = [
    './i2ckd-kd_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.kd))

# MGD feature distillation alone: the I2CKD + MGD config
# (i2ckd-mgd_bottleneck-layer4_*) without its I2CKD term. Same teacher,
# student, data, schedule, algorithm and MGD settings, so that the two
# differ only in I2CKD. (`_base_.mgd` is the MGD block as that config set
# it: channels 512 -> 2048, alpha_mgd 1e-5.)
_base_ = [
    './i2ckd-mgd_bottleneck-layer4_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.mgd))

# DIST alone (MMRazor's DISTLoss on the logits as pixel rows, inter 1,
# intra 1, tau 1, weight 1: configs/_base_/i2ckd/dist_logits.py): the
# I2CKD + DIST config (i2ckd-dist_bottleneck-logits_*) without its I2CKD
# term. Same teacher, student, data, schedule, algorithm and DIST
# settings, so that the two differ only in I2CKD.
_base_ = [
    './i2ckd-dist_bottleneck-logits_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.dist))

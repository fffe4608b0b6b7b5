# DIST alone on the ToyShapes CPU demo: the I2CKD + DIST config
# (i2ckd-dist_bottleneck-logits_*) without its I2CKD term, so that the two
# differ only in I2CKD. (`_base_.dist` is the DIST block as that config
# set it.)
_base_ = [
    './i2ckd-dist_bottleneck-logits_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py'  # noqa: E501
]
model = dict(
    distiller=dict(_base_.distill.distiller, _delete_=True, **_base_.dist))

# I2CKD + DIST on the GPU study's ToyStreets 256x512 pair: MMRazor's
# DISTLoss on the classifier logits as pixel rows
# (configs/_base_/i2ckd/dist_logits.py: inter 1, intra 1, tau 1, weight 1,
# as on Cityscapes). Everything else as in the I2CKD-only config; DIST alone
# is dist_logits_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r50-d8_deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py',  # noqa: E501
    '../_base_/i2ckd/dist_logits.py'
]
model = dict(distiller=_base_.dist)

# I2CKD + DIST on the ToyShapes CPU demo: MMRazor's DISTLoss on the classifier
# logits as pixel rows (configs/_base_/i2ckd/dist_logits.py: inter 1,
# intra 1, tau 1, weight 1, as on Cityscapes). Everything else as in the
# I2CKD-only config; DIST alone is dist_logits_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py',  # noqa: E501
    '../_base_/i2ckd/dist_logits.py'
]
model = dict(distiller=_base_.dist)

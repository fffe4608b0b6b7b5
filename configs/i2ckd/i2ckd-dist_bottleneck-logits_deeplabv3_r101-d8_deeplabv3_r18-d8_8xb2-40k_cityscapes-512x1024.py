# I2CKD + DIST on the classifier logits (MMRazor's DISTLoss on pixels as
# rows, configs/_base_/i2ckd/dist_logits.py: inter 1, intra 1, tau 1,
# weight 1, DIST's own Cityscapes settings). Everything else is the
# I2CKD-only Cityscapes config; DIST alone is dist_logits_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/dist_logits.py'
]
model = dict(distiller=_base_.dist)

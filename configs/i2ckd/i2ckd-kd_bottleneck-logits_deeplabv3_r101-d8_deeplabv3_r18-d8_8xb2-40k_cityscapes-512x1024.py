# I2CKD + vanilla logit KD (MMRazor's KLDivergence per pixel on the
# classifier logits, configs/_base_/i2ckd/kd_logits.py: tau 1, weight 1, the
# pixel-wise KD baseline of CIRKD). Everything else is the I2CKD-only
# Cityscapes config; KD alone is kd_logits_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/kd_logits.py'
]
model = dict(distiller=_base_.kd)
# KLDivergence's 'mean' divides by the 19 classes too: x 19 gives the
# per-pixel mean at weight 1 (kd_logits.py)
model['distiller'].distill_losses.loss_kd.loss_weight = \
    _base_.model.architecture.decode_head.num_classes

# I2CKD + vanilla logit KD on the GPU study's ToyStreets 256x512 pair:
# MMRazor's KLDivergence per pixel on the classifier logits
# (configs/_base_/i2ckd/kd_logits.py: tau 1, weight 1, as on Cityscapes).
# Everything else as in the I2CKD-only config; KD alone is kd_logits_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r50-d8_deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py',  # noqa: E501
    '../_base_/i2ckd/kd_logits.py'
]
model = dict(distiller=_base_.kd)
# KLDivergence's 'mean' divides by the classes too: x their count gives the
# per-pixel mean at weight 1 (kd_logits.py)
model['distiller'].distill_losses.loss_kd.loss_weight = \
    _base_.model.architecture.decode_head.num_classes

# I2CKD (decode_head.bottleneck) + feature distillation with MGD on
# backbone.layer4 (MMRazor's MGDConnector + MGDLoss,
# configs/_base_/i2ckd/mgd_layer4.py: the settings of MGD's own Cityscapes
# runs). Everything else is the I2CKD-only Cityscapes config; MGD alone is
# mgd_layer4_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/i2ckd/mgd_layer4.py'
]
model = dict(distiller=_base_.mgd)
# layer4: 512 channels in ResNetV1c-18 -> 2048 in ResNetV1c-101
model['distiller'].connectors.loss_mgd_sfeat.update(
    student_channels=512, teacher_channels=2048)
# MGD's 2e-5 per 2048 x 64 x 64 layer4 elements (its 512x512 crops); here
# 512x1024 crops give 2048 x 64 x 128 of them: 1e-5 (mgd_layer4.py)
model['distiller'].distill_losses.loss_mgd.alpha_mgd = \
    2e-5 * (2048 * 64 * 64) / (2048 * 64 * 128)

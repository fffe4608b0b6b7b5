# I2CKD (decode_head.bottleneck) + MGD feature distillation on backbone.layer4
# on the ToyShapes CPU demo (MMRazor's MGDConnector + MGDLoss,
# configs/_base_/i2ckd/mgd_layer4.py: lambda_mgd 0.75, alpha_mgd at MGD's
# weight per feature element). Everything else as in the I2CKD-only config; MGD
# alone is mgd_layer4_*.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py',  # noqa: E501
    '../_base_/i2ckd/mgd_layer4.py'
]
model = dict(distiller=_base_.mgd)
# layer4: 128 channels in the student -> 256 in the teacher
model['distiller'].connectors.loss_mgd_sfeat.update(
    student_channels=128, teacher_channels=256)
# MGD's 2e-5 per 2048 x 64 x 64 layer4 elements (its Cityscapes 512x512
# crops); here 64x64 crops give 256 x 8 x 8 of them
model['distiller'].distill_losses.loss_mgd.alpha_mgd = \
    2e-5 * (2048 * 64 * 64) / (256 * 8 * 8)

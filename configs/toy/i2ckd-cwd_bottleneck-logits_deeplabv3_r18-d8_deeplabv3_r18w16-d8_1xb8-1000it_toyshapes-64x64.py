# I2CKD + logit distillation (MMRazor's ChannelWiseDivergence on the
# classifier logits, decode_head.conv_seg) on the ToyShapes CPU demo.
# Everything else as in the I2CKD-only config.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb8-1000it_toyshapes-64x64.py'  # noqa: E501
]

model = dict(
    distiller=dict(
        student_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        teacher_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        # tau / weight of MMRazor's CWD recipe for MMSeg (tau=1, weight 3-5)
        distill_losses=dict(
            loss_cwd=dict(type='ChannelWiseDivergence', tau=1,
                          loss_weight=3)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))

# I2CKD + logit distillation (MMRazor's ChannelWiseDivergence), to test the
# claim that I2CKD improves an existing distillation method. Everything else
# is the I2CKD-only Cityscapes config; the CWD part follows MMRazor's
# configs/distill/mmseg/cwd/cwd_logits_pspnet_r101-d8_pspnet_r18-d8_*.py
# (logits = decode_head.conv_seg of both models, tau=1, loss_weight=5).
_base_ = ['./i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py']  # noqa: E501

model = dict(
    distiller=dict(
        student_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        teacher_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        distill_losses=dict(
            # tau in [1, 4] is the range used by CWD papers; MMRazor's value.
            loss_cwd=dict(type='ChannelWiseDivergence', tau=1,
                          loss_weight=5)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))

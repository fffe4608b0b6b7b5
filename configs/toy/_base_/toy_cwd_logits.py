# Logit distillation added to a toy I2CKD config: MMRazor's
# ChannelWiseDivergence on the classifier logits (decode_head.conv_seg), with
# the tau / weight of MMRazor's CWD recipe for MMSeg (tau=1, weight 3).
# Merged into ``model.distiller`` by the *i2ckd-cwd* toy configs.
cwd_distiller = dict(
    student_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    teacher_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    distill_losses=dict(
        loss_cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=3)),
    loss_forward_mappings=dict(
        loss_cwd=dict(
            preds_S=dict(from_student=True, recorder='logits'),
            preds_T=dict(from_student=False, recorder='logits'))))

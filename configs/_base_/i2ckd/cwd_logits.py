# Logit distillation added to an I2CKD config: MMRazor's ChannelWiseDivergence
# on the classifier logits (decode_head.conv_seg of both models), following
# MMRazor's configs/distill/mmseg/cwd/cwd_logits_pspnet_r101-d8_pspnet_r18-d8_*
# (tau=1, loss_weight=5; tau in [1, 4] is the range used by CWD papers).
# Not a config to train: an *i2ckd-cwd* config lists its I2CKD config and
# this file as bases and merges the block into its distiller:
#
#   model = dict(distiller=_base_.cwd)
cwd = dict(
    student_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    teacher_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    distill_losses=dict(
        loss_cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5)),
    loss_forward_mappings=dict(
        loss_cwd=dict(
            preds_S=dict(from_student=True, recorder='logits'),
            preds_T=dict(from_student=False, recorder='logits'))))

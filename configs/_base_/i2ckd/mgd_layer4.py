# Feature distillation: Masked Generative Distillation (MGD; Yang et al.,
# ECCV 2022) on the last backbone stage (backbone.layer4), as MGD's own
# segmentation code does (github.com/yzd-v/MGD, seg/: the backbone's last
# feature map). MMRazor's MGDConnector masks random student pixels
# (lambda_mgd of them), aligns the channels with a 1x1 conv and regenerates
# the teacher feature with two 3x3 convs; MMRazor's MGDLoss is
# alpha_mgd * sum of squared errors / N. Not a config to train: a config
# merges the block into its distiller and sets the channels and alpha_mgd:
#
#   model = dict(distiller=_base_.mgd)
#   model['distiller'].connectors.loss_mgd_sfeat.update(
#       student_channels=C_s, teacher_channels=C_t)   # layer4 channels
#   model['distiller'].distill_losses.loss_mgd.alpha_mgd = \
#       2e-5 * (2048 * 64 * 64) / (C_t * h * w)
#
# Hyper-parameters: MMRazor publishes MGD for detection only
# (configs/distill/mmdet/mgd: alpha 2e-5, lambda 0.65); for segmentation MGD's
# authors use alpha_mgd = 2e-5 and lambda_mgd = 0.75 (seg/configs/distillers/
# mgd/psp_r101_distill_deepv3_r18_40k_512x512_city.py: Cityscapes, 512x512
# crops, DeepLabV3-R18 student, 73.20 -> 76.31 mIoU). The loss is a sum over
# the feature's elements, so alpha is rescaled to keep MGD's weight per
# element: its 2e-5 goes with 2048 x 64 x 64 layer4 elements per image
# (R101, 512x512 crops); a config with C_t x h x w of them uses
# 2e-5 * (2048 * 64 * 64) / (C_t * h * w) (the test checks it).
# Left out here: MGD's segmentation runs also add a logit term (CWD-style,
# tau 4, weight 3); this block is the feature term alone, so that the
# feature method and the logit methods are compared apart. Add cwd_logits.py
# for both.
# The connector draws its mask from torch's global random generator at every
# training step.
mgd = dict(
    # `feat4`, as in i2ckd_layer4.py: merged with it, one recording serves both
    student_recorders=dict(
        feat4=dict(type='ModuleOutputs', source='backbone.layer4')),
    teacher_recorders=dict(
        feat4=dict(type='ModuleOutputs', source='backbone.layer4')),
    connectors=dict(
        loss_mgd_sfeat=dict(type='MGDConnector', lambda_mgd=0.75)),
    distill_losses=dict(loss_mgd=dict(type='MGDLoss', alpha_mgd=2e-5)),
    loss_forward_mappings=dict(
        loss_mgd=dict(
            preds_S=dict(
                from_student=True,
                recorder='feat4',
                connector='loss_mgd_sfeat'),
            preds_T=dict(from_student=False, recorder='feat4'))))

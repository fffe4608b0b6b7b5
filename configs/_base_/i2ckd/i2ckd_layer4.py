# A second I2CKD term on the last backbone stage (`backbone.layer4`), next to
# the one on the decode head's bottleneck (configs/_base_/i2ckd/
# i2ckd_bottleneck.py): the same loss and connector, a second feature
# location. Not a config to train: a config that already has the I2CKD
# block lists this file as a base, merges the block into its distiller and
# sets the connector's channels:
#
#   model = dict(distiller=_base_.i2ckd_layer4)
#   model['distiller'].connectors.loss_i2ckd4_sfeat.update(
#       in_channel=C_s, out_channel=C_t)   # student / teacher layer4 channels
#
# Measured on our toy CPU proxies (benchmarks/accuracy_study.md; chosen on
# ToyShapes val, 5 paired seeds on test): alone, vs I2CKD at the bottleneck
# only, +1.69 mIoU [+1.06, +2.32] on ToyStreets and +0.72 [-0.49, +1.93]
# (tied) on ToyShapes; with CWD logit distillation, vs CWD alone, +0.98
# [+0.47, +1.49] on ToyStreets and -0.69 [-1.37, +0.00] (tied) on ToyShapes
# (from-scratch students, 1000 iterations). With pretrained backbones and
# fresh splits (round 4, 400 iterations), with CWD vs CWD alone: tied on both,
# +0.85 [-2.51, +4.22] on ToyShapes, -0.21 [-1.16, +0.74] on ToyStreets.
# Not measured on real data.
i2ckd_layer4 = dict(
    student_recorders=dict(
        feat4=dict(type='ModuleOutputs', source='backbone.layer4')),
    teacher_recorders=dict(
        feat4=dict(type='ModuleOutputs', source='backbone.layer4')),
    connectors=dict(
        loss_i2ckd4_sfeat=dict(
            type='ConvModuleConnector', kernel_size=1, act_cfg=None)),
    distill_losses=dict(
        # the shipped variant, as at the bottleneck
        loss_i2ckd4=dict(
            type='I2CKDLoss', normalize=True, margin=0.2, pull_weight=1.0)),
    loss_forward_mappings=dict(
        loss_i2ckd4=dict(
            preds_S=dict(
                from_student=True,
                recorder='feat4',
                connector='loss_i2ckd4_sfeat'),
            preds_T=dict(from_student=False, recorder='feat4'),
            gt=dict(from_data='gt_sem_seg'))))

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
# Measured on our toy CPU proxies together with CWD logit distillation
# (benchmarks/accuracy_study.md, the arm np_2loc+cwd, chosen on ToyShapes
# val): +0.98 mIoU [+0.47, +1.49] over CWD alone on ToyStreets test, -0.69
# [-1.37, +0.00] (tied) on ToyShapes test. Not measured alone or on real
# data.
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

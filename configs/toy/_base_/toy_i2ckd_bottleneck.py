# I2CKD on the ASPP bottleneck output (decode_head.bottleneck) of the toy
# DeepLabV3 pair: student 32 ch -> connector -> teacher 128 ch. A toy
# distillation config adds the student (architecture), the teacher and its
# checkpoint; data, schedule and runtime are the student-alone config's, so
# the two runs differ only in distillation.
model = dict(
    _scope_='mmrazor',
    type='I2CKDDistill',
    distiller=dict(
        type='GTAwareDistiller',
        student_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        teacher_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        connectors=dict(
            loss_i2ckd_sfeat=dict(
                type='I2CKDConnector', in_channels=32, out_channels=128)),
        distill_losses=dict(
            loss_i2ckd=dict(
                type='I2CKDLoss',
                # num_classes: filled from the student's decode head
                loss_weight=1.0,
                # the shipped variant (benchmarks/accuracy_study.md):
                # L2-normalised prototypes, margin 0.2, explicit intra-class
                # pull. Literal I2CKD: normalize=False, margin=1.0,
                # pull_weight=0.0.
                normalize=True,
                margin=0.2,
                pull_weight=1.0)),
        loss_forward_mappings=dict(
            loss_i2ckd=dict(
                preds_S=dict(
                    from_student=True,
                    recorder='feat',
                    connector='loss_i2ckd_sfeat'),
                preds_T=dict(from_student=False, recorder='feat'),
                gt=dict(from_data='gt_sem_seg')))))
find_unused_parameters = True

# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-R18 student on Pascal VOC 2012
# aug (21 classes), 512x512 crops, 40k iterations (MMSeg's VOC-aug
# schedule), 4 GPUs x 4 images = batch 16.
# Student, data, schedule and runtime: the student baseline recipe
# baselines/deeplabv3_r18-d8_4xb4-40k_voc12aug-512x512.py
# (MMSeg's recipe for this dataset with MMSeg's R18 overrides; MMSeg has R18
# recipes for Cityscapes only). Teacher: MMSeg's R101 recipe.
_base_ = ['./baselines/deeplabv3_r18-d8_4xb4-40k_voc12aug-512x512.py']

custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# MMSeg model-zoo teacher (deeplabv3/metafile.yaml: 77.92 mIoU on VOC val).
# For a local file: --cfg-options model.teacher_ckpt=/path/to/teacher.pth
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x512_40k_voc12aug/deeplabv3_r101-d8_512x512_40k_voc12aug_20200613_161432-0017d784.pth'  # noqa: E501
teacher_cfg_path = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-40k_voc12aug-512x512.py'  # noqa: E501
num_classes = 21

student = {{_base_.model}}
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='I2CKDDistill',
    architecture=student,
    teacher=dict(cfg_path=teacher_cfg_path, pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='GTAwareDistiller',
        # ASPP bottleneck output: the feature right before the classifier
        # (128 channels in R18, 512 in R101).
        student_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        teacher_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        connectors=dict(
            loss_i2ckd_sfeat=dict(
                type='I2CKDConnector', in_channels=128, out_channels=512)),
        distill_losses=dict(
            loss_i2ckd=dict(
                type='I2CKDLoss',
                num_classes=num_classes,
                loss_weight=1.0,
                # I2CKD with L2-normalised prototypes, margin 0.2 and an
                # explicit intra-class pull: the variant that won the paired-
                # seed study (benchmarks/accuracy_study.md). Remove these
                # three lines for the literal loss of the paper.
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
auto_scale_lr = dict(enable=False, base_batch_size=16)

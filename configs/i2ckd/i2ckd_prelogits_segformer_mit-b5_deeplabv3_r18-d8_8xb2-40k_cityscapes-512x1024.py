# I2CKD from a transformer teacher: SegFormer MiT-B5 -> DeepLabV3-R18 student
# on Cityscapes, 8 GPUs x 2 images, 512x1024 crops, 40k iterations. Student,
# data, schedule and runtime: the DeepLabV3-R101 -> R18 Cityscapes config
# (MMSeg's R18 recipe); only the teacher differs: MMSeg's SegFormer MiT-B5
# Cityscapes recipe (trained on 1024x1024 crops; it runs on the student's
# 512x1024 crops here).
#
# The features differ in channels AND stride: the student's ASPP bottleneck
# is 128 x 1/8, the teacher's last feature before its classifier
# (SegformerHead.fusion_conv, the fused all-MLP output) is 256 x 1/4.
# Prototypes need no spatial alignment: the loss averages each feature over
# the labels resized to its own size, so only the channels are projected.
_base_ = [
    './i2ckd_bottleneck_deeplabv3_r101-d8_deeplabv3_r18-d8_8xb2-40k_cityscapes-512x1024.py'  # noqa: E501
]

# The distillation block with the teacher's feature and its 256 channels
# (SegformerHead.channels), merged into the model's distiller below and into
# `i2ckd` (the shared block, also in the dumped config), so that the two
# still show the same distiller.
i2ckd = dict(
    distiller=dict(
        teacher_recorders=dict(feat=dict(source='decode_head.fusion_conv')),
        connectors=dict(loss_i2ckd_sfeat=dict(out_channel=256))))
# Teacher: MMSeg's model zoo (segformer/metafile.yaml: 82.25 mIoU on
# Cityscapes val). A local file: --cfg-options model.teacher_ckpt=PATH
model = dict(
    teacher=dict(
        cfg_path='mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py'),  # noqa: E501
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b5_8x1_1024x1024_160k_cityscapes/segformer_mit-b5_8x1_1024x1024_160k_cityscapes_20211206_072934-87a052ec.pth',  # noqa: E501
    distiller=i2ckd['distiller'])

# I2CKD from a transformer teacher: SegFormer MiT-B5 -> DeepLabV3-R18 student
# on Cityscapes, 8 GPUs x 2 images, 512x1024 crops, 40k iterations. Student,
# data and runtime from MMSeg's R18 recipe; the teacher from MMSeg's
# SegFormer MiT-B5 Cityscapes recipe (trained on 1024x1024 crops; it runs on
# the student's 512x1024 crops here); the distillation block from
# configs/_base_/i2ckd/i2ckd_bottleneck.py.
#
# The features differ in channels AND stride: the student's ASPP bottleneck
# is 128 x 1/8, the teacher's last feature before its classifier
# (SegformerHead.fusion_conv, the fused all-MLP output) is 256 x 1/4.
# Prototypes need no spatial alignment: the loss averages each feature over
# the labels resized to its own size, so only the channels are projected.
_base_ = [
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# Teacher: MMSeg's model zoo (segformer/metafile.yaml: 82.25 mIoU on
# Cityscapes val). A local file: --cfg-options model.teacher_ckpt=PATH
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=dict(
        cfg_path='mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py',  # noqa: E501
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b5_8x1_1024x1024_160k_cityscapes/segformer_mit-b5_8x1_1024x1024_160k_cityscapes_20211206_072934-87a052ec.pth')  # noqa: E501
model['distiller'].teacher_recorders.feat.source = 'decode_head.fusion_conv'
# R18 ASPP bottleneck: 128 channels -> SegFormer's 256 (decode_head.channels)
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=256)

# 40k iterations (the recipe has 80k); 8 GPUs x the recipe's 2 images
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [dict(_base_.param_scheduler[0], end=40000)]
default_hooks = dict(checkpoint=dict(interval=4000))

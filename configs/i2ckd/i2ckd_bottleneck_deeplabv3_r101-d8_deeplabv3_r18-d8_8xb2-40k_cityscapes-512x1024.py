# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-R18 student on Cityscapes, the
# paper family's protocol (batch 16 = 8 GPUs x 2, 512x1024 crops, 40k iters,
# SGD + poly). The student, data pipeline and runtime come from MMSeg's R18
# recipe; the teacher from MMSeg's R101 recipe; the distillation block from
# configs/_base_/i2ckd/i2ckd_bottleneck.py; nothing is copied.
_base_ = [
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# Teacher: MMSeg's model zoo (deeplabv3/metafile.yaml: 77.12 mIoU on
# Cityscapes val). A local file: --cfg-options model.teacher_ckpt=PATH
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=dict(
        cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-40k_cityscapes-512x1024.py',  # noqa: E501
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x1024_40k_cityscapes/deeplabv3_r101-d8_512x1024_40k_cityscapes_20200605_012241-7fd3f799.pth')  # noqa: E501
# ASPP bottleneck: 128 channels in R18 -> 512 in the R101 teacher
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)

# 40k iterations (the recipe has 80k); 8 GPUs x the recipe's 2 images
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [dict(_base_.param_scheduler[0], end=40000)]
default_hooks = dict(checkpoint=dict(interval=4000))

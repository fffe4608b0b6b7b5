# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-R18 student on ADE20K (150
# classes), 512x512 crops, 80k iterations (MMSeg's ADE20K 80k schedule),
# 4 GPUs x 4 images = batch 16.
# Student, data, schedule and runtime: the student baseline recipe
# baselines/deeplabv3_r18-d8_4xb4-80k_ade20k-512x512.py (MMSeg's recipe for
# this dataset with MMSeg's R18 overrides; MMSeg has R18 recipes for
# Cityscapes only). Teacher: MMSeg's R101 recipe. The distillation block:
# configs/_base_/i2ckd/i2ckd_bottleneck.py.
_base_ = [
    './baselines/deeplabv3_r18-d8_4xb4-80k_ade20k-512x512.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# Teacher: MMSeg's model zoo (deeplabv3/metafile.yaml: 44.08 mIoU on ADE20K
# val). A local file: --cfg-options model.teacher_ckpt=PATH
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=dict(
        cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-80k_ade20k-512x512.py',  # noqa: E501
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x512_80k_ade20k/deeplabv3_r101-d8_512x512_80k_ade20k_20200615_021256-d89c7fa4.pth')  # noqa: E501
# ASPP bottleneck: 128 channels in R18 -> 512 in the R101 teacher
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)

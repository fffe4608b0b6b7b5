# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-R18 student on Pascal VOC 2012
# aug (21 classes), 512x512 crops, 40k iterations (MMSeg's VOC-aug
# schedule), 4 GPUs x 4 images = batch 16.
# Student, data, schedule and runtime: the student baseline recipe
# baselines/deeplabv3_r18-d8_4xb4-40k_voc12aug-512x512.py (MMSeg's recipe for
# this dataset with MMSeg's R18 overrides; MMSeg has R18 recipes for
# Cityscapes only). Teacher: MMSeg's R101 recipe. The distillation block:
# configs/_base_/i2ckd/i2ckd_bottleneck.py.
_base_ = [
    './baselines/deeplabv3_r18-d8_4xb4-40k_voc12aug-512x512.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# Teacher: MMSeg's model zoo (deeplabv3/metafile.yaml: 77.92 mIoU on VOC
# val). A local file: --cfg-options model.teacher_ckpt=PATH
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=dict(
        cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-40k_voc12aug-512x512.py',  # noqa: E501
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x512_40k_voc12aug/deeplabv3_r101-d8_512x512_40k_voc12aug_20200613_161432-0017d784.pth')  # noqa: E501
# ASPP bottleneck: 128 channels in R18 -> 512 in the R101 teacher
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)

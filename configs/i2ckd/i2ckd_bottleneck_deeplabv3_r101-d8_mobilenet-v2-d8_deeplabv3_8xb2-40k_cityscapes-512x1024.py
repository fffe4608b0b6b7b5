# I2CKD: DeepLabV3-R101 teacher -> DeepLabV3-MobileNetV2 student on
# Cityscapes, 8 GPUs x 2 images, 40k iterations. Student, data and runtime
# from MMSeg's MobileNetV2-D8 DeepLabV3 recipe; teacher from MMSeg's R101 one;
# the distillation block from configs/_base_/i2ckd/i2ckd_bottleneck.py.
_base_ = [
    'mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
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
# MMSeg's MobileNetV2 recipe keeps the R101 head width (channels=512), so the
# student's ASPP bottleneck already has the teacher's 512 channels; the 1x1
# connector is kept as the learnable adaptation the other configs have.
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=512, out_channel=512)

# 40k iterations (the recipe has 80k); 8 GPUs x the recipe's 2 images
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [dict(_base_.param_scheduler[0], end=40000)]
default_hooks = dict(checkpoint=dict(interval=4000))

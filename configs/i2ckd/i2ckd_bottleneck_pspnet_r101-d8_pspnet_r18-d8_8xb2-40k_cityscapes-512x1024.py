# I2CKD: PSPNet-R101 teacher -> PSPNet-R18 student on Cityscapes (the pair of
# MMRazor's CWD config), 8 GPUs x 2 images, 40k iterations. Student, data
# and runtime from MMSeg's PSPNet R18 recipe; teacher from MMSeg's R101 one;
# the distillation block from configs/_base_/i2ckd/i2ckd_bottleneck.py.
_base_ = [
    'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

# Teacher: MMSeg's model zoo (pspnet/metafile.yaml: 79.76 mIoU on Cityscapes
# val; the teacher of MMRazor's CWD config). A local file:
# --cfg-options model.teacher_ckpt=PATH
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=dict(
        cfg_path='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',  # noqa: E501
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth')  # noqa: E501
# PSPHead.bottleneck (the 3x3 conv after the pyramid pooling): 128 channels
# in R18 -> 512 in R101
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)

# 40k iterations (the recipe has 80k); 8 GPUs x the recipe's 2 images
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [dict(_base_.param_scheduler[0], end=40000)]
default_hooks = dict(checkpoint=dict(interval=4000))

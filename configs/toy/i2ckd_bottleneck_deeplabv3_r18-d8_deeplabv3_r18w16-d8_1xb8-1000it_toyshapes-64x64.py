# I2CKD on the ToyShapes CPU demo: teacher DeepLabV3 R18-D8 at 1/2 width (trained with
# deeplabv3_r18-d8_1xb8-1500it_toyshapes-64x64.py) -> student DeepLabV3 R18-D8 at 1/4 width,
# on the ASPP bottleneck output (configs/toy/_base_/toy_i2ckd_bottleneck.py).
_base_ = [
    './_base_/models/toy_deeplabv3.py', './_base_/toyshapes_64x64.py',
    './_base_/toy_runtime.py', './_base_/toy_i2ckd_bottleneck.py'
]
# The teacher checkpoint written by
#   python tools/train.py configs/toy/deeplabv3_r18-d8_1xb8-1500it_toyshapes-64x64.py \
#       --work-dir work_dirs/toy/teacher
# Another path: --cfg-options model.teacher_ckpt=PATH
teacher_ckpt = 'work_dirs/toy/teacher/iter_1500.pth'
model = dict(
    architecture={{_base_.student_model}},
    teacher={{_base_.teacher_model}},
    teacher_ckpt=teacher_ckpt)

# I2CKD on the ToyStreets CPU proxy: teacher DeepLabV3 R18-D8 at 1/2 width (trained with
# deeplabv3_r18-d8_1xb4-1500it_toystreets-128x256.py) -> student DeepLabV3 R18-D8 at 1/4 width,
# on the ASPP bottleneck output with the distillation block every config
# shares (configs/_base_/i2ckd/i2ckd_bottleneck.py), on top of the
# student-alone config (data, schedule, runtime, the student): the two differ
# only in distillation.
_base_ = [
    './deeplabv3_r18w16-d8_1xb4-1000it_toystreets-128x256.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
# The teacher checkpoint written by
#   python tools/train.py configs/toy/deeplabv3_r18-d8_1xb4-1500it_toystreets-128x256.py \
#       --work-dir work_dirs/toy/toystreets_teacher
# Another path: --cfg-options model.teacher_ckpt=PATH
teacher_ckpt = 'work_dirs/toy/toystreets_teacher/iter_1500.pth'
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,  # the student-alone config's student
    teacher=_base_.teacher_model,
    teacher_ckpt=teacher_ckpt)
# ASPP bottleneck: 32 channels in the 1/4-width student -> 128 in the teacher
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=32, out_channel=128)

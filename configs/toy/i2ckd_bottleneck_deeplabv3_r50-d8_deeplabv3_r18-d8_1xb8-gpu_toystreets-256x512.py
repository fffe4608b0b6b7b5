# GPU study, I2CKD (benchmarks/gpu_run.sh, part d): teacher DeepLabV3 R50-D8
# (deeplabv3_r50-d8_1xb8-gpu_toystreets-256x512.py) -> student DeepLabV3
# R18-D8, full width, on the ASPP bottleneck, on top of the student-alone
# config (the two differ only in distillation). The study sets
# model.teacher_ckpt.
_base_ = [
    './deeplabv3_r18-d8_1xb8-gpu_toystreets-256x512.py',
    '../_base_/i2ckd/i2ckd_bottleneck.py'
]
model = dict(
    _base_.i2ckd,
    architecture=_base_.model,
    teacher=_base_.teacher_model,
    teacher_ckpt=None)
# ASPP bottleneck: 128 channels in the R18 student -> 512 in the R50 teacher
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)

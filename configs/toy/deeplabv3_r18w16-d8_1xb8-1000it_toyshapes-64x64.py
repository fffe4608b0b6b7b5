# ToyShapes student alone: DeepLabV3, ResNetV1c-18-D8 at 1/4 width
# (base_channels 16), 64x64 CPU. The baseline the distilled students beat.
_base_ = [
    './_base_/models/toy_deeplabv3.py', './_base_/toyshapes_64x64.py',
    './_base_/toy_runtime.py'
]
model = {{_base_.student_model}}

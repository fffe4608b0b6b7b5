# ToyShapes teacher: DeepLabV3, ResNetV1c-18-D8 at 1/2 width
# (base_channels 32), 64x64 CPU, 1500 iterations.
_base_ = [
    './_base_/models/toy_deeplabv3.py', './_base_/toyshapes_64x64.py',
    './_base_/toy_runtime_1500it.py'
]
model = {{_base_.teacher_model}}

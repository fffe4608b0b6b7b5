# ToyShapes teacher: DeepLabV3, ResNetV1c-18-D8 at full width, 64x64 CPU.
_base_ = [
    './_base_/models/toy_deeplabv3.py', './_base_/toyshapes_64x64.py',
    './_base_/toy_runtime.py'
]
model = {{_base_.teacher_model}}

# ToyStreets teacher: DeepLabV3, ResNetV1c-18-D8 at 1/2 width
# (base_channels 32), 64x128 crops of 128x256 images, CPU, 1500 iterations.
_base_ = [
    './_base_/models/toy_deeplabv3_toystreets.py',
    './_base_/toystreets_128x256.py', './_base_/toy_runtime_1500it.py'
]
model = {{_base_.teacher_model}}

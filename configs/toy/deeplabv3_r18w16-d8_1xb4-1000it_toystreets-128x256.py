# ToyStreets student alone: DeepLabV3, ResNetV1c-18-D8 at 1/4 width
# (base_channels 16), 64x128 crops of 128x256 images, CPU. The baseline the
# distilled students beat.
_base_ = [
    './_base_/models/toy_deeplabv3_toystreets.py',
    './_base_/toystreets_128x256.py', './_base_/toy_runtime.py'
]
model = {{_base_.student_model}}

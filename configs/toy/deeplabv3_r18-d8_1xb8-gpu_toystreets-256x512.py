# GPU study student alone (benchmarks/gpu_run.sh, part d): DeepLabV3
# ResNetV1c-18-D8 at full width on ToyStreets 256x512 (128x256 crops,
# batch 8), from the ToyNet-pretrained R18 backbone (set by the study).
_base_ = [
    './_base_/models/deeplabv3_r50_r18_toystreets_256x512.py',
    './_base_/toystreets_256x512.py', './_base_/toy_runtime.py'
]
model = {{_base_.student_model}}

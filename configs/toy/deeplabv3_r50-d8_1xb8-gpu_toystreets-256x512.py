# GPU study teacher (benchmarks/gpu_run.sh, part d): DeepLabV3 ResNetV1c-50-D8
# on ToyStreets 256x512 (128x256 crops, batch 8). Its backbone starts from the
# ToyNet-pretrained R50 (the study sets model.backbone.init_cfg); the schedule
# is set by the study (--cfg-options train_cfg.max_iters=...).
_base_ = [
    './_base_/models/deeplabv3_r50_r18_toystreets_256x512.py',
    './_base_/toystreets_256x512.py', './_base_/toy_runtime.py'
]
model = {{_base_.teacher_model}}

# ToyShapes teacher: DeepLabV3, ResNetV1c-18-D8 at full width, 64x64 CPU.
_base_ = [
    './_base_/models/toy_deeplabv3.py', './_base_/toyshapes_64x64.py',
    './_base_/toy_runtime.py'
]
model = {{_base_.teacher_model}}

# The teacher trains longer than the students (1000 iterations): it has to
# be clearly better than them for distillation to have something to give.
max_iters = 1500
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-5,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))

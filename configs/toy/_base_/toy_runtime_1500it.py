# The toy runtime at 1500 iterations: the teachers train longer than the
# students (1000 iterations), so that they are clearly better than them and
# distillation has something to give. Everything else is toy_runtime.py's.
_base_ = ['./toy_runtime.py']
max_iters = 1500
param_scheduler = [dict(_base_.param_scheduler[0], end=max_iters)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))

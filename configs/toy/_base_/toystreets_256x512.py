# ToyStreets at 256x512 (tools/make_toy_data.py --dataset toystreets
# --height 256 --width 512) for the GPU study: 128x256 training crops after a
# 0.75-1.5x random resize, 8 per batch, whole 256x512 images at test time;
# 4 loader workers a run (the GPU study runs 4 at once on 16 cores).
# The pipelines are the 128x256 ones with twice the scale and crop (a list
# is replaced, not merged, on inheritance: derived here step by step).
_base_ = ['./toystreets_128x256.py']
crop_size = (128, 256)
scale = (512, 256)
train_pipeline = [
    dict(step, scale=scale) if step['type'] == 'RandomResize' else
    dict(step, crop_size=crop_size) if step['type'] == 'RandomCrop' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=scale) if step['type'] == 'Resize' else step
    for step in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2, persistent_workers=True,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

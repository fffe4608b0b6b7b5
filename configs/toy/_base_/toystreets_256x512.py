# ToyStreets at 256x512 (tools/make_toy_data.py --dataset toystreets
# --height 256 --width 512) for the GPU study: 128x256 training crops after a
# 0.75-1.5x random resize, 8 per batch, whole 256x512 images at test time;
# 4 loader workers a run (the GPU study runs 4 at once on 16 cores).
_base_ = ['./toystreets_128x256.py']
crop_size = (128, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(512, 256),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
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

# ToyStreets (tools/make_toy_data.py --dataset toystreets): 128x256 street-
# like scenes, 14 imbalanced classes with small and thin objects. Trained on
# 64x128 crops at full resolution (thin poles survive), 4 per batch (the
# pixels of one ToyShapes batch of 8, so a run costs about the same on CPU),
# evaluated on whole images.
_base_ = ['./toyshapes_64x64.py']
dataset_type = 'ToyStreetsDataset'
data_root = 'data/toystreets'
crop_size = (64, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(256, 128),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

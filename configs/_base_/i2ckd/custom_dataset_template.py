# TEMPLATE: I2CKD on your own dataset (DeepLabV3 R101-D8 teacher -> R18-D8
# student). Copy it next to your configs, then edit the lines marked EDIT.
# Your data: images and label PNGs (pixel value = class index, 255 =
# ignored) in MMSeg's BaseSegDataset layout:
#   data_root/img_dir/{train,val}/*.jpg   data_root/ann_dir/{train,val}/*.png
# Your teacher: a DeepLabV3 R101-D8 trained on the same classes, e.g. with
# MMSeg's recipe on this data (its checkpoint goes to model.teacher_ckpt).
# The class count is written ONCE, as `classes`: both heads take
# len(classes) and I2CKDDistill gives it to the loss.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './i2ckd_bottleneck.py'
]
custom_imports = dict(imports=['i2ckd_mm'], allow_failed_imports=False)

classes = ('background', 'road', 'car')  # EDIT: your classes, label order
palette = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]  # EDIT: one RGB a class
data_root = 'data/my_dataset'  # EDIT
teacher_ckpt = 'work_dirs/my_teacher/iter_40000.pth'  # EDIT
crop_size = (512, 512)
num_classes = len(classes)

metainfo = dict(classes=classes, palette=palette)
# MMEngine's Runner hands this to the distillation algorithm too
data_preprocessor = dict(size=crop_size)
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN on several GPUs
head = dict(num_classes=num_classes, norm_cfg=norm_cfg)
teacher = _base_.model.copy()
teacher.merge(dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,  # the trained teacher checkpoint replaces everything
    backbone=dict(depth=101, norm_cfg=norm_cfg),
    decode_head=head, auxiliary_head=head))
student = _base_.model.copy()
student.merge(dict(
    data_preprocessor=dict(size=crop_size),
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(head, in_channels=512, channels=128),
    auxiliary_head=dict(head, in_channels=256, channels=64)))
model = dict(
    _base_.i2ckd, architecture=student, teacher=teacher,
    # your own MMEngine training checkpoint loads with weights_only=True
    # (plus the MMEngine types a run writes): no trust flag needed
    teacher_ckpt=teacher_ckpt)
model['distiller'].connectors.loss_i2ckd_sfeat.update(
    in_channel=128, out_channel=512)  # R18 / R101 ASPP bottleneck channels

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png')  # EDIT: suffixes
train_dataloader = dict(
    batch_size=4, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, pipeline=train_pipeline, data_prefix=dict(
        img_path='img_dir/train', seg_map_path='ann_dir/train')))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, pipeline=test_pipeline, data_prefix=dict(
        img_path='img_dir/val', seg_map_path='ann_dir/val')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# The GPU study's pair on ToyStreets at 256x512 (benchmarks/gpu_run.sh, part
# d): teacher DeepLabV3 ResNetV1c-50-D8, student DeepLabV3 ResNetV1c-18-D8,
# both at full width (MMSeg's deeplabv3_r50-d8 / deeplabv3_r18-d8 heads), BN,
# 128x256 training crops (inputs padded to the crop). Same structure as the CPU
# toy pair (toy_deeplabv3.py), at the real models' widths.
_base_ = ['./toy_deeplabv3_toystreets.py']
data_preprocessor = dict(size=(128, 256))
teacher_model = dict(
    data_preprocessor=dict(size=(128, 256)),
    backbone=dict(depth=50, stem_channels=64, base_channels=64),
    decode_head=dict(in_channels=2048, channels=512),
    auxiliary_head=dict(in_channels=1024, channels=256))
student_model = dict(
    data_preprocessor=dict(size=(128, 256)),
    backbone=dict(depth=18, stem_channels=64, base_channels=64),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))

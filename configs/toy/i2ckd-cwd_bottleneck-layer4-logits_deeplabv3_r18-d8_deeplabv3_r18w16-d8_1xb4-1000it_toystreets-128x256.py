# I2CKD at two feature locations (the ASPP bottleneck and the last backbone
# stage, configs/_base_/i2ckd/i2ckd_layer4.py) + CWD logit distillation on
# the ToyStreets CPU proxy: the arm np_2loc+cwd of benchmarks/accuracy_study.py.
# Everything else as in the I2CKD + CWD config.
_base_ = [
    './i2ckd-cwd_bottleneck-logits_deeplabv3_r18-d8_deeplabv3_r18w16-d8_1xb4-1000it_toystreets-128x256.py',  # noqa: E501
    '../_base_/i2ckd/i2ckd_layer4.py'
]
model = dict(distiller=_base_.i2ckd_layer4)
# layer4: 128 channels in the 1/4-width student -> 256 in the teacher
model['distiller'].connectors.loss_i2ckd4_sfeat.update(
    in_channel=128, out_channel=256)

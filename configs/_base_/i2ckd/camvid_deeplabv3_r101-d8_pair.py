# Base of the CamVid I2CKD config; not meant to be trained as it is.
# MMSeg publishes no CamVid recipe or model, so the teacher cannot come from
# an `mmseg::` cfg_path as in the other configs. Here BOTH the student
# (architecture) and the teacher are the model of our CamVid teacher recipe
# (DeepLabV3 R101-D8, 11 classes); the child config then applies MMSeg's R18
# overrides to the student only. (One config file cannot both take a model
# from its base and override parts of it, hence this intermediate file.)
_base_ = [
    '../../i2ckd/baselines/deeplabv3_r101-d8_4xb4-40k_camvid-360x360.py',
    './i2ckd_bottleneck.py'
]

model = dict(
    _base_.i2ckd,
    architecture={{_base_.model}},
    teacher={{_base_.model}},
    # No published CamVid teacher: this placeholder is not a file, so
    # training stops with "teacher checkpoint not found" until the user
    # passes their own, e.g. one trained with the teacher recipe above:
    #   --cfg-options model.teacher_ckpt=work_dirs/.../iter_40000.pth
    # (an MMEngine training checkpoint loads safely, without a trust flag).
    teacher_ckpt='SET_model.teacher_ckpt_TO_YOUR_CAMVID_TEACHER.pth')

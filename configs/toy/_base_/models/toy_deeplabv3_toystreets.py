# The toy DeepLabV3 teacher and student for ToyStreets: 14 classes, inputs
# padded to the 64x128 training crop (whole 128x256 images at test time).
_base_ = ['./toy_deeplabv3.py']
num_classes = 14
data_preprocessor = dict(size=(64, 128))
teacher_model = dict(
    data_preprocessor=dict(size=(64, 128)),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
student_model = dict(
    data_preprocessor=dict(size=(64, 128)),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

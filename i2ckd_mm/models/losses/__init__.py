from .i2ckd_loss import I2CKDLoss
from .inputs import bad_label_message, label_bins, resize_labels
from .prototypes import class_prototypes

__all__ = [
    'I2CKDLoss', 'bad_label_message', 'class_prototypes', 'label_bins',
    'resize_labels'
]

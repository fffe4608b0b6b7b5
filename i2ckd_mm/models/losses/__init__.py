from .i2ckd_loss import I2CKDLoss
from .prototypes import class_prototypes, class_prototypes_many, resize_labels

__all__ = [
    'I2CKDLoss', 'class_prototypes', 'class_prototypes_many', 'resize_labels'
]

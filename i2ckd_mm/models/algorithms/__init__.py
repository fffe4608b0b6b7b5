from .i2ckd_distill import I2CKDDistill

__all__ = ['I2CKDDistill']

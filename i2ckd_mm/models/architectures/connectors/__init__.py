from .i2ckd_connector import I2CKDConnector

__all__ = ['I2CKDConnector']

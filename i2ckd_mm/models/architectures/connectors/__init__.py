from .i2ckd_connector import I2CKDConnector
from .pixel_rows_connector import PixelRowsConnector

__all__ = ['I2CKDConnector', 'PixelRowsConnector']

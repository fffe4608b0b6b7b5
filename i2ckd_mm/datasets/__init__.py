from .camvid import CamVidDataset  # noqa: F401
from .toy import (TOY_CLASSES, TOY_PALETTE, TOY_STREETS_CLASSES,  # noqa: F401
                  TOY_STREETS_PALETTE, ToyShapesDataset, ToyStreetsDataset)

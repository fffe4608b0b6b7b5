from .camvid import CamVidDataset  # noqa: F401
from .toy import TOY_CLASSES, TOY_PALETTE, ToyShapesDataset  # noqa: F401

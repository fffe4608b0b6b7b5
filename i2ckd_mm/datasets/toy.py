"""ToyShapes: a small synthetic segmentation dataset for CPU demos and tests.

Written to disk by ``tools/make_toy_data.py`` (:func:`i2ckd_mm.toy.make_toy_shapes`)
in MMSeg's custom-dataset layout::

    data_root/
      img_dir/{train,val}/00000.png   RGB images
      ann_dir/{train,val}/00000.png   uint8 label maps, 255 = ignore

The shapes share colours and textures, so a pixel's class follows from the
shape around it (context), not from its colour.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

#: Class names, in label order (label 0 = background).
TOY_CLASSES = ('background', 'disk', 'ring', 'square', 'triangle', 'cross')
#: One RGB colour per class, for visualisation only.
TOY_PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200],
               [245, 130, 48], [145, 30, 180]]


@DATASETS.register_module()
class ToyShapesDataset(BaseSegDataset):
    """The ToyShapes dataset (6 classes, ``.png`` images and labels).

    Args:
        **kwargs: ``data_root``, ``data_prefix``, ``pipeline`` etc. as in
            :class:`mmseg.datasets.BaseSegDataset`.
    """
    METAINFO = dict(classes=TOY_CLASSES, palette=TOY_PALETTE)

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)

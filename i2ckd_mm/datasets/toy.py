"""ToyShapes: a small synthetic segmentation dataset for CPU demos and tests.

Written to disk by ``tools/make_toy_data.py`` (``tools/toy/shapes.py``)
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

#: ToyStreets classes (``tools/toy/streets.py``), in label order.
TOY_STREETS_CLASSES = ('road', 'sidewalk', 'building', 'fence', 'pole',
                       'traffic light', 'traffic sign', 'vegetation',
                       'terrain', 'sky', 'person', 'car', 'truck',
                       'bicycle')
#: Cityscapes' colours for the same classes (fence: Cityscapes' wall).
TOY_STREETS_PALETTE = [[128, 64, 128], [244, 35, 232], [70, 70, 70],
                       [102, 102, 156], [153, 153, 153], [250, 170, 30],
                       [220, 220, 0], [107, 142, 35], [152, 251, 152],
                       [70, 130, 180], [220, 20, 60], [0, 0, 142],
                       [0, 0, 70], [119, 11, 32]]


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


@DATASETS.register_module()
class ToyStreetsDataset(ToyShapesDataset):
    """The ToyStreets dataset (14 street classes, ``.png`` files).

    Written by ``tools/make_toy_data.py --dataset toystreets``
    (``tools/toy/streets.py``); same layout as ToyShapes.
    """
    METAINFO = dict(classes=TOY_STREETS_CLASSES, palette=TOY_STREETS_PALETTE)

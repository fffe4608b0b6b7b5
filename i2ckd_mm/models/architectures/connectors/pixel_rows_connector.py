"""``PixelRowsConnector``: segmentation logits as one row per pixel.

MMRazor's ``DISTLoss`` correlates along dim 1 (inter-class: over the classes
of each row) and along dim 0 (intra-class: over the rows, for each class).
Given (N, C, H, W) logits, its intra-class term therefore correlates each
class over the N images separately at every pixel position, which is not
DIST's segmentation loss: DIST's own code (github.com/hunto/DIST_KD,
segmentation/losses/dist_kd.py) first turns the logits into (N*H*W, C) rows
and correlates each class over all the pixels of the batch. Put on both the
student's and the teacher's logits, this connector gives ``DISTLoss`` those
rows, and it then computes DIST's segmentation loss.
"""
import torch
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector
from mmrazor.registry import MODELS


@MODELS.register_module()
class PixelRowsConnector(BaseConnector):
    """(N, C, H, W) -> (N*H*W, C): every pixel of the batch becomes a row.

    No parameters: the same connector can serve the student and the teacher.
    Row ``n*H*W + h*W + w`` holds the C values of pixel (h, w) of image n.

    Args:
        init_cfg (dict, optional): MMEngine init config (nothing to
            initialise). Defaults to None.

    Shapes:
        - feature: (N, C, H, W) -> (N*H*W, C).
    """

    def forward_train(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.dim() != 4:
            raise ValueError(
                'PixelRowsConnector expects N x C x H x W logits, got shape '
                f'{tuple(feature.shape)}')
        return feature.permute(0, 2, 3, 1).reshape(-1, feature.shape[1])

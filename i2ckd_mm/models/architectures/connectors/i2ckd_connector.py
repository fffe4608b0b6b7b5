"""Student -> teacher channel connector for feature distillation."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector
from mmrazor.registry import MODELS


@MODELS.register_module()
class I2CKDConnector(BaseConnector):
    """A learnable 1x1 conv (+ optional BN) from student to teacher channels.

    Owned by the distiller: it is trained with the student, saved in the
    distillation checkpoint and dropped from the exported student.

    Args:
        in_channels (int): Student channels C_s.
        out_channels (int): Teacher channels C_t.
        norm (bool): Add a BatchNorm after the conv. Defaults to False.
        detach_input (bool): Stop the distillation gradient at the connector,
            so only the connector (not the student) learns from the loss.
            Defaults to False. Used by ablations of where the loss acts.
        init_cfg (dict, optional): MMEngine init config.

    Shapes:
        - feature: (N, C_s, h, w) -> (N, C_t, h, w).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm: bool = False,
                 detach_input: bool = False,
                 init_cfg: Optional[Dict] = dict(
                     type='Kaiming', layer='Conv2d')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.detach_input = detach_input
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=1, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward_train(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.dim() != 4 or feature.shape[1] != self.in_channels:
            raise ValueError(
                f'I2CKDConnector expects N x {self.in_channels} x h x w '
                f'(student channels), got {tuple(feature.shape)}; set '
                'in_channels to the recorded student feature\'s channels')
        if self.detach_input:
            feature = feature.detach()
        return self.bn(self.conv(feature))

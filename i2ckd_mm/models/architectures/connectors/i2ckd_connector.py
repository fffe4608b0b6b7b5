"""``I2CKDConnector``: kept for configs and checkpoints written before the
shipped configs switched to MMRazor's ``ConvModuleConnector``.

The shipped configs use MMRazor's connector directly::

    dict(type='ConvModuleConnector', in_channel=C_s, out_channel=C_t,
         kernel_size=1, act_cfg=None)

which is the same layer (1x1 conv, no activation, optional norm, the same
Kaiming initialisation). New configs should use that.
"""
from typing import Dict, Optional

import torch
from mmrazor.models.architectures.connectors import ConvModuleConnector
from mmrazor.registry import MODELS


@MODELS.register_module()
class I2CKDConnector(ConvModuleConnector):
    """MMRazor's ``ConvModuleConnector`` fixed to a 1x1 conv, no activation,
    with the argument names and state_dict keys of the former I2CKDConnector.

    Why a subclass and not only an alias: two things a plain registry alias
    cannot do, both for work saved with the former class.

    * **Old checkpoints load.** The former class stored ``conv.*`` and
      ``bn.*``; ``ConvModuleConnector`` stores ``conv_module.conv.*`` and
      ``conv_module.bn.*``. ``_load_from_state_dict`` renames the old keys, so
      ``--resume`` / ``load_from`` of a distillation checkpoint written before
      the switch restores the trained connector instead of (MMEngine resumes
      with ``strict=False``) silently starting it from scratch. Exported
      students are not affected: they never contain the connector.
    * **Its channel check.** A feature with the wrong channel count stops
      with an error naming the config key to change, rather than PyTorch's
      conv message.

    ``detach_input`` of the former class is gone (only its own test used it);
    a config that passes it fails with Python's "unexpected keyword" error.

    Args:
        in_channels (int): Student channels C_s.
        out_channels (int): Teacher channels C_t.
        norm (bool): BatchNorm after the conv (the conv then has no bias).
            Defaults to False.
        init_cfg (dict, optional): MMEngine init config. Defaults to None:
            ``ConvModule``'s own init (Kaiming normal, fan_out, bias 0), the
            same draw as the former ``dict(type='Kaiming', layer='Conv2d')``.

    Shapes:
        - feature: (N, C_s, h, w) -> (N, C_t, h, w).
    """

    # former key prefix -> ConvModuleConnector's
    _OLD_PREFIXES = {'conv.': 'conv_module.conv.', 'bn.': 'conv_module.bn.'}

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm: bool = False,
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(
            in_channel=in_channels,
            out_channel=out_channels,
            kernel_size=1,
            norm_cfg=dict(type='BN') if norm else None,
            act_cfg=None,
            init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Rename the former class's keys in place (torch hands every module
        # the whole state dict with its own prefix).
        for old, new in self._OLD_PREFIXES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                new_key = prefix + new + key[len(prefix + old):]
                if new_key not in state_dict:
                    state_dict[new_key] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward_train(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.dim() != 4 or feature.shape[1] != self.in_channels:
            raise ValueError(
                f'I2CKDConnector expects N x {self.in_channels} x h x w '
                f'(student channels), got {tuple(feature.shape)}; set '
                'in_channels to the recorded student feature\'s channels')
        return super().forward_train(feature)

"""The student -> teacher connector: MMRazor's ConvModuleConnector as the
shipped configs write it, and the I2CKDConnector kept for old configs and
checkpoints."""
import pytest
import torch

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from mmrazor.models.architectures.connectors import ConvModuleConnector
from mmrazor.registry import MODELS

from i2ckd_mm.models.architectures.connectors import I2CKDConnector

# exactly the connector of configs/_base_/i2ckd/i2ckd_bottleneck.py
CONFIG_CONNECTOR = dict(type='ConvModuleConnector', kernel_size=1,
                        act_cfg=None)


def _einsum_1x1(weight, x):
    return torch.einsum('oc,nchw->nohw', weight[:, :, 0, 0], x)


def test_config_connector_is_a_linear_1x1_projection():
    torch.manual_seed(0)
    conn = MODELS.build(dict(CONFIG_CONNECTOR, in_channel=3, out_channel=5))
    conn.init_weights()
    conv = conn.conv_module.conv
    assert conv.kernel_size == (1, 1)
    assert not conn.conv_module.with_activation
    x = torch.randn(2, 3, 4, 6)
    # with the default ReLU, negative outputs would be clipped to 0
    ref = _einsum_1x1(conv.weight, x) + conv.bias.view(1, 5, 1, 1)
    out = conn(x)
    assert (out < 0).any()
    torch.testing.assert_close(out, ref)


def test_i2ckd_connector_is_the_config_connector_with_old_argument_names():
    new = MODELS.build(dict(type='I2CKDConnector', in_channels=4,
                            out_channels=6, norm=True))
    assert isinstance(new, ConvModuleConnector)
    ref = MODELS.build(dict(CONFIG_CONNECTOR, in_channel=4, out_channel=6,
                            norm_cfg=dict(type='BN')))
    assert new.state_dict().keys() == ref.state_dict().keys()
    assert new.conv_module.conv.bias is None  # BN follows: no conv bias
    torch.manual_seed(3)
    new.init_weights()
    torch.manual_seed(3)
    ref.init_weights()
    torch.testing.assert_close(new.conv_module.conv.weight,
                               ref.conv_module.conv.weight, rtol=0, atol=0)


def test_init_is_the_former_kaiming_draw():
    """Same seed, same weights as the former ``init_cfg=Kaiming``
    (fan_out, relu, normal, bias 0): distillation runs reproduce."""
    conn = I2CKDConnector(in_channels=8, out_channels=16)
    torch.manual_seed(5)
    conn.init_weights()
    expected = torch.empty(16, 8, 1, 1)
    torch.manual_seed(5)
    torch.nn.init.kaiming_normal_(expected, mode='fan_out',
                                  nonlinearity='relu')
    torch.testing.assert_close(conn.conv_module.conv.weight, expected,
                               rtol=0, atol=0)
    assert torch.count_nonzero(conn.conv_module.conv.bias) == 0


@pytest.mark.parametrize('norm', [False, True])
def test_former_checkpoint_keys_load(norm):
    """A distillation checkpoint written by the former class (``conv.*``,
    ``bn.*``) loads strictly and gives the same output."""
    torch.manual_seed(0)
    old = {'conv.weight': torch.randn(4, 3, 1, 1)}
    if norm:
        old.update({'bn.weight': torch.rand(4) + 0.5,
                    'bn.bias': torch.randn(4),
                    'bn.running_mean': torch.randn(4),
                    'bn.running_var': torch.rand(4) + 0.5,
                    'bn.num_batches_tracked': torch.tensor(7)})
    else:
        old['conv.bias'] = torch.randn(4)
    # the connector inside the distiller, as a checkpoint stores it
    parent = torch.nn.ModuleDict(
        dict(sfeat=I2CKDConnector(in_channels=3, out_channels=4, norm=norm)))
    parent.load_state_dict({f'sfeat.{k}': v for k, v in old.items()})
    conn = parent['sfeat'].eval()
    x = torch.randn(2, 3, 5, 5)
    y = _einsum_1x1(old['conv.weight'], x)
    if norm:
        y = (y - old['bn.running_mean'].view(1, 4, 1, 1)) / torch.sqrt(
            old['bn.running_var'].view(1, 4, 1, 1) + 1e-5)
        y = y * old['bn.weight'].view(1, 4, 1, 1) + old['bn.bias'].view(
            1, 4, 1, 1)
        assert conn.conv_module.bn.num_batches_tracked == 7
    else:
        y = y + old['conv.bias'].view(1, 4, 1, 1)
    torch.testing.assert_close(conn(x), y)
    # keys written today load too (nothing renamed twice)
    again = I2CKDConnector(in_channels=3, out_channels=4, norm=norm)
    again.load_state_dict(conn.state_dict())
    torch.testing.assert_close(again.eval()(x), y)


def test_norm_batchnorm_trains_on_batch_statistics():
    torch.manual_seed(0)
    conn = I2CKDConnector(in_channels=3, out_channels=4, norm=True)
    x = torch.randn(2, 3, 5, 5)
    conn.train()
    out = conn(x)
    y = _einsum_1x1(conn.conv_module.conv.weight, x)
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    ref = (y - mean) / torch.sqrt(var + 1e-5)  # gamma 1, beta 0
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(conn.conv_module.bn.running_mean,
                               0.1 * mean.view(-1).detach())


def test_wrong_channels_error_names_the_channels():
    conn = I2CKDConnector(in_channels=3, out_channels=4)
    with pytest.raises(ValueError, match=r'N x 3 x h x w.*\(2, 5, 4, 4\)'):
        conn(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match='in_channels'):
        conn(torch.randn(3, 4, 4))


def test_detach_input_is_gone():
    with pytest.raises(TypeError, match='detach_input'):
        I2CKDConnector(in_channels=3, out_channels=4, detach_input=True)

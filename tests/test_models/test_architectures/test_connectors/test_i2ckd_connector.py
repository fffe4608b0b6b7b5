"""I2CKDConnector: a 1x1 conv (+BN) from student to teacher channels."""
import pytest
import torch

import i2ckd_mm  # noqa: F401  (compat shims before mmseg/mmrazor)
from i2ckd_mm.models.architectures.connectors.i2ckd_connector import \
    I2CKDConnector


def test_conv_equals_einsum_with_its_weight():
    torch.manual_seed(0)
    conn = I2CKDConnector(in_channels=3, out_channels=5)
    conn.init_weights()
    x = torch.randn(2, 3, 4, 6)
    out = conn(x)
    w = conn.conv.weight[:, :, 0, 0]  # (C_t, C_s)
    ref = torch.einsum('oc,nchw->nohw', w, x) + conn.conv.bias.view(1, 5, 1, 1)
    assert out.shape == (2, 5, 4, 6)
    torch.testing.assert_close(out, ref)
    assert isinstance(conn.bn, torch.nn.Identity)


def test_norm_adds_batchnorm_and_drops_conv_bias():
    torch.manual_seed(0)
    conn = I2CKDConnector(in_channels=3, out_channels=4, norm=True)
    assert conn.conv.bias is None
    assert isinstance(conn.bn, torch.nn.BatchNorm2d)
    x = torch.randn(2, 3, 5, 5)
    conn.train()
    out = conn(x)
    y = torch.einsum('oc,nchw->nohw', conn.conv.weight[:, :, 0, 0], x)
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    ref = (y - mean) / torch.sqrt(var + conn.bn.eps)  # gamma 1, beta 0
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    # running statistics moved (momentum 0.1 from mean 0)
    torch.testing.assert_close(conn.bn.running_mean,
                               0.1 * mean.view(-1).detach())


def test_wrong_channels_error_names_the_channels():
    conn = I2CKDConnector(in_channels=3, out_channels=4)
    with pytest.raises(ValueError, match=r'N x 3 x h x w.*\(2, 5, 4, 4\)'):
        conn(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match='in_channels'):
        conn(torch.randn(3, 4, 4))


@pytest.mark.parametrize('detach', [False, True])
def test_detach_input_stops_gradient_to_the_student(detach):
    conn = I2CKDConnector(in_channels=3, out_channels=4, detach_input=detach)
    student = torch.nn.Conv2d(2, 3, 1)
    out = conn(student(torch.randn(2, 2, 4, 4)))
    out.pow(2).sum().backward()
    assert conn.conv.weight.grad is not None
    assert conn.conv.weight.grad.abs().sum() > 0  # connector always learns
    if detach:
        assert student.weight.grad is None
    else:
        assert student.weight.grad.abs().sum() > 0

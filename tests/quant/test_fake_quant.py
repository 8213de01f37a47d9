import pytest
import torch

from arnq.quant.fake_quant import calc_qparams, fake_quantize, fake_quantize_reference, quant_range, sqnr_db

BITS = list(range(2, 9))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_per_tensor_matches_torch_exactly(bits, symmetric):
    x = torch.randn(64, 97, generator=torch.Generator().manual_seed(bits)) * 3 + 0.5
    scale, zp = calc_qparams(x.min(), x.max(), bits, symmetric)
    qmin, qmax = quant_range(bits, symmetric)
    ref = torch.fake_quantize_per_tensor_affine(x, scale.reshape(1), zp.int().reshape(1), qmin, qmax)
    assert torch.equal(fake_quantize_reference(x, scale, zp, qmin, qmax), ref)  # the per-token path's math
    assert torch.equal(fake_quantize(x, scale, zp, qmin, qmax), ref)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_per_channel_matches_torch_exactly(bits, symmetric):
    w = torch.randn(48, 80, generator=torch.Generator().manual_seed(100 + bits))
    w[3] *= 20  # one outlier channel
    scale, zp = calc_qparams(w.amin(dim=1), w.amax(dim=1), bits, symmetric)
    qmin, qmax = quant_range(bits, symmetric)
    ref = torch.fake_quantize_per_channel_affine(w, scale, zp.int(), 0, qmin, qmax)
    assert torch.equal(fake_quantize_reference(w, scale[:, None], zp[:, None], qmin, qmax), ref)
    assert torch.equal(fake_quantize(w, scale[:, None], zp[:, None], qmin, qmax), ref)


def test_ste_gradient_matches_torch():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    scale, zp = torch.tensor(0.02), torch.tensor(100.0)  # range [-2, 3.1]: the left tail is clipped
    fake_quantize_reference(x, scale, zp, 0, 255).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_tensor_affine(x_ref, scale.reshape(1), zp.int().reshape(1), 0, 255).sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    assert x.grad[0] == 0 and x.grad[50] == 1


def test_sqnr_grows_with_bits():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    sqnrs = []
    for bits in BITS:
        scale, zp = calc_qparams(x.min(), x.max(), bits, False)
        sqnrs.append(sqnr_db(x, fake_quantize(x, scale, zp, *quant_range(bits, False))))
    gains = [b - a for a, b in zip(sqnrs, sqnrs[1:], strict=False)]
    assert all(g > 4.5 for g in gains), sqnrs  # about 6 dB per bit
    assert sqnrs[-1] > 35


def test_asymmetric_range_covers_extremes_and_zero():
    x = torch.tensor([0.5, 1.0, 4.0])  # all positive: the range is widened to include 0
    scale, zp = calc_qparams(x.min(), x.max(), 8, False)
    assert zp.item() == 0 and scale.item() == pytest.approx(4.0 / 255)
    assert fake_quantize(torch.zeros(1), scale, zp, 0, 255).item() == 0.0


def test_per_token_reference_path_quantizes_each_row_on_its_own_grid():
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(7)) * torch.arange(1, 7)[:, None]
    scale, zp = calc_qparams(x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True), 4, False)
    out = fake_quantize(x, scale, zp, 0, 15)
    for row in range(6):
        ref = torch.fake_quantize_per_tensor_affine(x[row], scale[row].reshape(1), zp[row].int().reshape(1), 0, 15)
        assert torch.equal(out[row], ref)

import pytest
import torch
from skimage.metrics import structural_similarity

from convae.loss import MSESSIMLoss, mse_ssim_loss, ssim


def test_identical_images_ssim_term_zero():
    x = torch.rand(3, 3, 37, 31, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    assert mse_ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_is_mse_plus_weighted_ssim_term():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    mse = ((y - x) ** 2).mean()
    s = ssim(y, x).mean()
    assert mse_ssim_loss(y, x).item() == pytest.approx((mse + 0.1 * (1 - s)).item(), rel=1e-6)
    assert mse_ssim_loss(y, x, ssim_weight=0.0).item() == pytest.approx(mse.item(), rel=1e-6)
    assert MSESSIMLoss(0.5)(y, x).item() == pytest.approx((mse + 0.5 * (1 - s)).item(), rel=1e-6)
    per = mse_ssim_loss(y, x, reduction="none")
    assert per.shape == (2,)


def test_data_range_is_one_not_255():
    # With the package default data_range=255, SSIM of these two would be ~1.
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert ssim(x * 0.5, x).item() < 0.9


@pytest.mark.parametrize("c", [3, 1])
def test_ssim_matches_skimage_reference(c):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, c, 37, 31, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(2, c, 37, 31, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(y.float(), x.float())
    for i in range(2):
        ref = structural_similarity(
            y[i].numpy().transpose(1, 2, 0),
            x[i].numpy().transpose(1, 2, 0),
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=2,
        )
        assert abs(ours[i].item() - ref) < 1e-4


def test_small_images_need_smaller_window():
    x = torch.rand(1, 3, 9, 20)
    with pytest.raises(ValueError, match=r"smaller than the SSIM window \(11\)"):
        mse_ssim_loss(x, x)
    assert mse_ssim_loss(x, x, win_size=7).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="win_size must be a positive odd"):
        ssim(x, x, win_size=6)


def test_bad_input():
    with pytest.raises(ValueError, match="differ"):
        mse_ssim_loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="reduction"):
        mse_ssim_loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), reduction="sum")
    with pytest.raises(ValueError, match="ssim_weight"):
        mse_ssim_loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), ssim_weight=-1)


def test_gradient_is_finite():
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    mse_ssim_loss(y, x).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmarks.blur import BlurOperator, degrade
from benchmarks.faces import load_face_folder
from benchmarks.metrics import mse, psnr, ssim, t_interval


def _sk(x_hat: torch.Tensor, x: torch.Tensor):
    out_s, out_p = [], []
    for a, b in zip(x_hat.double().numpy(), x.double().numpy()):
        kw = dict(data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        if a.shape[0] == 1:
            s = structural_similarity(a[0], b[0], **kw)
        else:
            s = structural_similarity(
                a.transpose(1, 2, 0), b.transpose(1, 2, 0), channel_axis=-1, **kw
            )
        out_s.append(s)
        out_p.append(peak_signal_noise_ratio(b, a, data_range=1))
    return np.array(out_s), np.array(out_p)


@pytest.mark.parametrize("channels, shape", [(3, (37, 31)), (1, (33, 45)), (3, (64, 64))])
def test_parity_random(channels, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, channels, *shape, generator=g)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s_ref, p_ref = _sk(x_hat, x)
    assert np.abs(ssim(x_hat, x).numpy() - s_ref).max() < 1e-4
    assert np.abs(psnr(x_hat, x).numpy() - p_ref).max() < 1e-4


@pytest.mark.parametrize("gray", [False, True])
def test_parity_real_faces(faces_dir, gray):
    x = load_face_folder(faces_dir, size=47, gray=gray, max_images=4).images
    y = degrade(x, BlurOperator.gaussian(25, 3.0))
    s_ref, p_ref = _sk(y, x)
    assert np.abs(ssim(y, x).numpy() - s_ref).max() < 1e-4
    assert np.abs(psnr(y, x).numpy() - p_ref).max() < 1e-4


def test_clipping_and_identical():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert mse(x + 5, x).max() <= 1.0  # outputs clipped to [0, 1] first
    assert torch.isfinite(psnr(x, x)).all()
    with pytest.raises(ValueError, match="shape"):
        mse(x, x[:1])


def test_t_interval():
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302652729911275 * 1.0 / np.sqrt(3))

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from benchmarks.blur import BlurOperator, degrade, gaussian_kernel, load_psf, quantize8


def test_gaussian_kernel_normalised_and_symmetric():
    k = gaussian_kernel(25, 3.0)
    assert k.shape == (25, 25)
    assert torch.isclose(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    assert k.argmax() == 12 * 25 + 12


@pytest.mark.parametrize("shape", [(37, 31), (32, 32)])
def test_reflect_boundary_matches_scipy_mirror(shape):
    """Reflect in numpy's sense (edge not repeated) == scipy.ndimage 'mirror'."""
    op = BlurOperator.gaussian(25, 3.0)
    x = torch.rand(2, 3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = np.stack(
        [
            [ndi.convolve(x[i, c].numpy(), op.kernel.numpy(), mode="mirror") for c in range(3)]
            for i in range(2)
        ]
    )
    assert np.abs(op.A(x).numpy() - ref).max() < 1e-12
    # ... and differs from the edge-repeating 'reflect' of scipy (the OpenCV-101 distinction)
    ref_sym = ndi.convolve(x[0, 0].numpy(), op.kernel.numpy(), mode="reflect")
    assert np.abs(op.A(x)[0, 0].numpy() - ref_sym).max() > 1e-4


def test_even_user_kernel_matches_scipy():
    k = torch.rand(6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    op = BlurOperator(k)
    x = torch.rand(1, 1, 33, 40, dtype=torch.float64)
    ref = ndi.convolve(x[0, 0].numpy(), op.kernel.numpy(), mode="mirror")
    assert np.abs(op.A(x)[0, 0].numpy() - ref).max() < 1e-12


@pytest.mark.parametrize("kernel", ["gauss", "even"])
def test_adjoint(kernel, device):
    g = torch.Generator().manual_seed(2)
    op = (
        BlurOperator.gaussian(25, 3.0)
        if kernel == "gauss"
        else BlurOperator(torch.rand(8, 5, dtype=torch.float64, generator=g))
    )
    x = torch.rand(2, 3, 37, 31, dtype=torch.float64, generator=g).to(device)
    y = torch.rand(2, 3, 37, 31, dtype=torch.float64, generator=g).to(device)
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)


def test_float32_and_constant_preserved(device):
    op = BlurOperator.gaussian()
    x = torch.full((1, 3, 33, 35), 0.4, device=device)
    y = op.A(x)
    assert y.dtype == torch.float32 and y.device.type == device.type
    assert torch.allclose(y, x, atol=1e-6)


def test_too_small_image_error():
    with pytest.raises(ValueError, match="too small"):
        BlurOperator.gaussian(25, 3.0).A(torch.rand(1, 1, 12, 40))


def test_quantize_and_degrade():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    q = quantize8(x * 1.2 - 0.1)
    assert q.min() >= 0 and q.max() <= 1
    assert torch.allclose(q * 255, torch.round(q * 255), atol=1e-4)
    op = BlurOperator.gaussian()
    y0 = degrade(x, op)
    assert torch.allclose(y0, quantize8(op.A(x)))
    y1 = degrade(x, op, noise=0.05, generator=torch.Generator().manual_seed(0))
    y2 = degrade(x, op, noise=0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y1, y2) and not torch.equal(y1, y0)
    with pytest.raises(ValueError, match="noise"):
        degrade(x, op, noise=-1)


def test_psf_file_npy_and_image(tmp_path):
    from PIL import Image

    arr = np.zeros((5, 5))
    arr[2, :] = 3.0
    np.save(tmp_path / "k.npy", arr)
    k = load_psf(tmp_path / "k.npy")
    assert abs(float(k.sum()) - 1) < 1e-12 and k[2, 0] == pytest.approx(0.2)
    Image.fromarray((arr * 80).astype(np.uint8)).save(tmp_path / "k.png")
    assert torch.allclose(load_psf(tmp_path / "k.png"), k)
    with pytest.raises(FileNotFoundError, match="PSF"):
        load_psf(tmp_path / "missing.npy")
    np.save(tmp_path / "neg.npy", -arr)
    with pytest.raises(ValueError, match="nonnegative"):
        load_psf(tmp_path / "neg.npy")

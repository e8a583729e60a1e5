"""Asymmetric (camera-shake) kernels: the shipped Levin et al. kernels, the operator's
orientation and adjoint, and every non-blind method restoring better than the blurred input."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from benchmarks.blur import (
    KERNEL_NAMES,
    BlurOperator,
    levin_kernel,
    named_kernel,
)

LEVIN_SIZES = [19, 17, 15, 27, 13, 21, 23, 23]


def test_the_eight_levin_kernels_ship_normalised_and_asymmetric():
    assert KERNEL_NAMES == tuple(f"levin09:{i}" for i in range(1, 9))
    for i, size in enumerate(LEVIN_SIZES, start=1):
        k = levin_kernel(i)
        assert k.dtype == torch.float64 and k.shape == (size, size)
        assert abs(float(k.sum()) - 1.0) < 1e-12 and float(k.min()) >= 0
        assert float((k - k.flip(0, 1)).abs().max()) > 0.05  # not symmetric: a test of it all
        assert torch.equal(named_kernel(f"levin09:{i}"), k)
    op = BlurOperator.named(" Levin09:4 ")
    assert op.kernel.shape == (27, 27) and op.meta()["kind"] == "levin09:4"


def _asymmetric(kind: str) -> torch.Tensor:
    if kind == "levin-odd":
        return levin_kernel(5)  # 13 x 13
    g = torch.Generator().manual_seed(4)  # an even-sized, odd-by-even asymmetric streak
    k = torch.zeros(6, 9, dtype=torch.float64)
    k[1, 0:4], k[2, 3:7], k[4, 6:9] = 1.0, 0.5, 0.25
    return k + 0.01 * torch.rand(6, 9, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["levin-odd", "even"])
@pytest.mark.parametrize("shape", [(37, 31), (32, 33)])
def test_asymmetric_operator_is_a_convolution_with_its_exact_adjoint(kind, shape):
    """A is scipy's convolution (the kernel flipped, not a correlation) with the mirror
    boundary, and A_adjoint is its adjoint to float precision."""
    op = BlurOperator(_asymmetric(kind))
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, *shape, dtype=torch.float64, generator=g)
    y = torch.rand(2, 3, *shape, dtype=torch.float64, generator=g)
    ref = ndi.convolve(x[1, 2].numpy(), op.kernel.numpy(), mode="mirror")
    assert np.abs(op.A(x)[1, 2].numpy() - ref).max() < 1e-12
    lhs, rhs = (op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)
    # the adjoint is the correlation (the flipped kernel), not the blur again
    assert float((op.A_adjoint(y) - op.A(y)).abs().max()) > 1e-3

"""PatchGrid: shapes, coverage, exact adjoints of fold_sum/extract and assemble."""

import pytest
import torch

from dnmf.deblur.patches import PatchGrid


@pytest.mark.parametrize(
    "hw,size,stride", [((37, 31), 8, 4), ((32, 32), 8, 4), ((33, 40), 6, 3), ((16, 20), 5, 5)]
)
def test_adjoints(device, hw, size, stride):
    g = PatchGrid(*hw, size, stride)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *hw, generator=gen, dtype=torch.float64).to(device)
    p = torch.rand(2, 3 * size * size, g.n_patches, generator=gen, dtype=torch.float64).to(device)
    # <P x, p> = <x, P^T p> for extraction with zero boundary / overlap-add
    lhs = (g.extract(x, mode="zeros") * p).sum()
    rhs = (x * g.fold_sum(p)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)
    # <assemble(p), x> = <p, assemble_adjoint(x)>
    lhs = (g.assemble(p) * x).sum()
    rhs = (p * g.assemble_adjoint(x)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)


def test_assemble_inverts_extract(device):
    g = PatchGrid(37, 31, 8, 3)
    x = torch.rand(1, 3, 37, 31, device=device)
    for mode in ("zeros", "reflect"):
        assert torch.allclose(g.assemble(g.extract(x, mode=mode)), x, atol=1e-6)
    assert g.counts(device).min() >= 1  # every pixel is covered


def test_context_patches_are_centred():
    g = PatchGrid(32, 32, 8, 4)
    x = torch.rand(1, 1, 32, 32)
    small = g.extract(x, mode="reflect").reshape(1, 8, 8, -1)
    big = g.extract(x, context=3, mode="reflect").reshape(1, 14, 14, -1)
    assert torch.equal(big[:, 3:11, 3:11], small)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride"):
        PatchGrid(32, 32, 4, 8)
    g = PatchGrid(32, 32, 8, 4)
    with pytest.raises(ValueError, match="expected"):
        g.extract(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="mode"):
        g.extract(torch.rand(1, 3, 32, 32), mode="wrap")

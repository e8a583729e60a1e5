"""convae.tta: the 8 flips / quarter turns and the test-time self-ensemble."""

import pytest
import torch

from convae import dihedral, self_ensemble, undo_dihedral


def test_the_eight_transforms_are_distinct_and_invertible():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # not square
    seen = []
    for k in range(8):
        y = dihedral(x, k)
        assert y.shape[-2:] == ((4, 5) if k % 2 == 0 else (5, 4))
        assert torch.equal(undo_dihedral(y, k), x)
        seen.append(y.flatten())
    sq = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert len({tuple(dihedral(sq, k).flatten().tolist()) for k in range(8)}) == 8
    assert torch.equal(dihedral(x, 0), x)
    for bad in (-1, 8):
        with pytest.raises(ValueError, match="0..7"):
            dihedral(x, bad)
        with pytest.raises(ValueError, match="0..7"):
            undo_dihedral(x, bad)


def test_self_ensemble_averages_the_undone_outputs():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)  # not flip-equivariant
    x = torch.rand(2, 3, 6, 7)
    want = sum(undo_dihedral(conv(dihedral(x, k)), k) for k in range(8)) / 8
    torch.testing.assert_close(self_ensemble(conv, x), want)
    assert not torch.allclose(self_ensemble(conv, x), conv(x))
    double = torch.nn.Identity()  # equivariant: ensemble = model
    torch.testing.assert_close(self_ensemble(double, x), x)
    torch.testing.assert_close(self_ensemble(conv, x, [0]), conv(x).detach())
    with pytest.raises(ValueError, match="at least one"):
        self_ensemble(conv, x, [])

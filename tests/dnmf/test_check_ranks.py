"""dnmf.check_ranks: factorize's check of the ranks against init and V's shape, on its own."""

import numpy as np
import pytest

import dnmf
from dnmf.factorize import check_ranks


def _factorize_error(ranks, init, V):
    with pytest.raises((ValueError, TypeError)) as e:
        dnmf.factorize(V, ranks, init=init, max_iter=1)
    return e.type, str(e.value)


@pytest.mark.parametrize(
    "ranks, init",
    [
        ([9], "nndsvda"),  # above min(m, n) = 8
        ([4, 6], "nndsvd"),  # a deeper rank above the previous one
        ([0], "random"),
        ([2.5], "random"),
        ([], "random"),
        ([3], "nosuch"),
    ],
)
def test_the_same_refusal_as_factorize(ranks, init):
    V = np.random.default_rng(0).random((12, 8))
    kind, message = _factorize_error(ranks, init, V)
    with pytest.raises(kind) as e:
        check_ranks(ranks, init, V.shape)
    assert str(e.value) == message


def test_ranks_factorize_takes_pass_and_come_back_as_ints():
    assert check_ranks(np.int64(5), "nndsvda", (12, 8)) == [5]
    assert check_ranks((8, 4), "nndsvd", (2, 12, 8)) == [8, 4]  # a batch: (B, m, n)
    assert check_ranks([20, 30], "random", (12, 8)) == [20, 30]
    assert dnmf.check_ranks is check_ranks and "check_ranks" in dnmf.__all__

"""Every bad input raises an error that names the parameter and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dnmf


@pytest.fixture
def V(rng):
    return rng.random((10, 8)) + 0.1


def test_negative_entries_counted(V):
    V[0, 0], V[3, 2] = -0.5, -2.0
    with pytest.raises(
        ValueError, match=r"V must be nonnegative: found 2 negative entries \(minimum -2"
    ):
        dnmf.factorize(V, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(V, bad):
    V[1, 1] = bad
    with pytest.raises(ValueError, match="V contains NaN or infinity"):
        dnmf.factorize(V, 2)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5)])
def test_wrong_ndim(shape):
    with pytest.raises(
        ValueError, match=r"V must be 2-D \(m, n\) or 3-D \(batch, m, n\); got ndim"
    ):
        dnmf.factorize(np.ones(shape), 1)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 3, 3)])
def test_empty(shape):
    with pytest.raises(ValueError, match="V is empty"):
        dnmf.factorize(np.ones(shape), 1)


@pytest.mark.parametrize("ranks", [0, -1, [3, 0], []])
def test_ranks_not_positive(V, ranks):
    with pytest.raises(ValueError, match="ranks must"):
        dnmf.factorize(V, ranks)


@pytest.mark.parametrize("ranks", [2.0, "3", [2, 1.5], [True], None])
def test_ranks_not_ints(V, ranks):
    with pytest.raises(
        TypeError, match="ranks must be a positive int or a sequence of positive ints"
    ):
        dnmf.factorize(V, ranks)


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # short runs on purpose
@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "nndsvdar"])
def test_first_rank_too_large_for_nndsvd(V, init):
    with pytest.raises(ValueError, match=r"needs the first rank <= min\(m, n\) = 8.*init='random'"):
        dnmf.factorize(V, 9, init=init)
    dnmf.factorize(V, 9, init="random", max_iter=5, seed=0)  # the suggested way out works


def test_deeper_rank_too_large_for_nndsvd(V):
    with pytest.raises(ValueError, match=r"ranks\[1\] <= 3.*init='random'"):
        dnmf.factorize(V, [3, 5])


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # short runs on purpose
@pytest.mark.parametrize("beta", [0, -0.5, "itakura-saito"])
def test_beta_nonpositive_with_zeros(V, beta):
    V[2, 3] = 0.0
    with pytest.raises(ValueError, match=r"beta=-?0(\.5)? needs V > 0 .* 1 zero entries"):
        dnmf.factorize(V, 2, beta=beta)
    mask = np.ones_like(V)
    mask[2, 3] = 0  # a masked-out zero is fine
    dnmf.factorize(V, 2, beta=beta, mask=mask, max_iter=5, seed=0)


@pytest.mark.parametrize("beta", ["frobenius2", None, np.nan, True])
def test_bad_beta(V, beta):
    with pytest.raises(ValueError, match="beta must be a real number or one of"):
        dnmf.factorize(V, 2, beta=beta)


def test_bad_init_name(V):
    with pytest.raises(ValueError, match=r"init must be one of \('nndsvd'"):
        dnmf.factorize(V, 2, init="svd")


def test_custom_needs_factors(V):
    with pytest.raises(ValueError, match="init='custom' needs both Ws"):
        dnmf.factorize(V, 2, init="custom", H=np.ones((2, 8)))


def test_custom_wrong_shape(V):
    with pytest.raises(ValueError, match=r"Ws\[1\] must have shape \(4, 2\), got \(3, 2\)"):
        dnmf.factorize(
            V, [4, 2], init="custom", Ws=[np.ones((10, 4)), np.ones((3, 2))], H=np.ones((2, 8))
        )
    with pytest.raises(ValueError, match=r"H must have shape \(2, 8\), got \(2, 7\)"):
        dnmf.factorize(V, 2, init="custom", Ws=[np.ones((10, 2))], H=np.ones((2, 7)))
    with pytest.raises(ValueError, match="Ws must be a list of 2 factors"):
        dnmf.factorize(V, [4, 2], init="custom", Ws=[np.ones((10, 4))], H=np.ones((2, 8)))


def test_custom_wrong_sign(V):
    W = np.ones((10, 2))
    W[0, 0] = -1
    with pytest.raises(ValueError, match=r"Ws\[0\] must be nonnegative: found 1 negative"):
        dnmf.factorize(V, 2, init="custom", Ws=[W], H=np.ones((2, 8)))
    with pytest.raises(ValueError, match="H contains NaN or infinity"):
        dnmf.factorize(V, 2, init="custom", Ws=[np.ones((10, 2))], H=np.full((2, 8), np.nan))


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # short runs on purpose
def test_custom_factors_ignored_warning(V):
    with pytest.warns(RuntimeWarning, match="only used with init='custom'"):
        dnmf.factorize(V, 2, H=np.ones((2, 8)), max_iter=2, seed=0)


def test_mask_wrong_shape_and_values(V):
    with pytest.raises(ValueError, match=r"mask must have V's shape \(10, 8\), got \(8, 10\)"):
        dnmf.factorize(V, 2, mask=np.ones((8, 10)))
    with pytest.raises(ValueError, match=r"mask must hold weights in \[0, 1\]"):
        dnmf.factorize(V, 2, mask=np.full(V.shape, 2.0))
    with pytest.raises(ValueError, match="mask must observe at least one entry"):
        dnmf.factorize(V, 2, mask=np.zeros(V.shape))


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("max_iter", 0, "max_iter must be an int >= 1"),
        ("max_iter", 2.5, "max_iter must be an int >= 1"),
        ("tol", -1.0, "tol must be a float >= 0"),
        ("eps", 0.0, "eps must be a float > 0"),
        ("check_every", 0, "check_every must be an int >= 1"),
        ("pretrain", 0, "pretrain must be a bool or an int >= 1"),
        ("seed", -3, r"seed must be None or an int from 0 to 2\*\*64 - 1"),
        ("device", 12.5, "device must be a torch device"),
    ],
)
def test_bad_scalar_parameters(V, name, value, match):
    with pytest.raises(ValueError, match=match):
        dnmf.factorize(V, 2, **{name: value})


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_bad_penalties(V, name):
    with pytest.raises(ValueError, match=rf"{name} must be a float or a sequence of 3 floats"):
        dnmf.factorize(V, [3, 2], **{name: [0.1, 0.2]})
    with pytest.raises(ValueError, match=rf"{name} must be finite and >= 0"):
        dnmf.factorize(V, [3, 2], **{name: -1.0})
    with pytest.raises(TypeError, match=rf"{name} must be a float or a sequence of floats"):
        dnmf.factorize(V, [3, 2], **{name: "big"})


def test_bad_types(V):
    with pytest.raises(TypeError, match="V must hold real numbers"):
        dnmf.factorize(np.array([["a", "b"]]), 1)
    with pytest.raises(TypeError, match="V must hold real numbers"):
        dnmf.factorize(V.astype(complex), 1)
    with pytest.raises(TypeError, match="V must be a numpy array or a torch tensor"):
        dnmf.factorize("matrix", 1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        dnmf.factorize(V, 1, dtype="int32")


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # short runs on purpose
def test_integer_input_becomes_float64():
    res = dnmf.factorize(np.arange(1, 13).reshape(3, 4), 2, max_iter=5, seed=0)
    assert res.H.dtype == np.float64
    res = dnmf.factorize(torch.arange(1, 13).reshape(3, 4), 2, max_iter=5, seed=0)
    assert res.H.dtype == torch.float64


def test_solve_h_checks_factors(V):
    with pytest.raises(ValueError, match=r"Ws\[0\] must be nonnegative with 10 rows"):
        dnmf.solve_h(V, [np.ones((9, 2))])
    with pytest.raises(ValueError, match=r"H must be nonnegative with shape \(2, 8\)"):
        dnmf.solve_h(V, [np.ones((10, 2))], H=np.ones((3, 8)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_solve_h_refuses_non_finite_factors_and_codes(V, bad):
    W = np.ones((10, 2))
    W[3, 1] = bad
    with pytest.raises(ValueError, match=r"Ws\[0\] contains NaN or infinity"):
        dnmf.solve_h(V, [W])
    with pytest.raises(ValueError, match=r"Ws\[1\] contains NaN or infinity"):
        dnmf.solve_h(V, [np.ones((10, 3)), np.where(np.eye(3, 2) > 0, bad, 1.0)])
    H = np.ones((2, 8))
    H[0, 5] = bad
    with pytest.raises(ValueError, match="H contains NaN or infinity"):
        dnmf.solve_h(V, [np.ones((10, 2))], H=H)


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine without a GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_missing_cuda_device_is_a_clear_error(V, no_cuda, device):
    with pytest.raises(ValueError, match=r"device='cuda(:1)?' is not available: .*device='cpu'"):
        dnmf.factorize(V, 2, device=device)
    with pytest.raises(ValueError, match="device='cuda(:1)?' is not available"):
        dnmf.solve_h(V, [np.ones((10, 2))], device=device)


def test_cuda_index_past_the_gpus_is_a_clear_error(V, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:3' is not available: torch sees 1 CUDA"):
        dnmf.factorize(V, 2, device="cuda:3")


def test_estimator_and_shards_name_a_missing_device(V, no_cuda):
    from dnmf.distributed import factorize_columns

    with pytest.raises(ValueError, match="device='cuda' is not available"):
        dnmf.DeepNMF(n_components=2, device="cuda").fit(V)
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        factorize_columns(V, 2, device="cuda")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short runs
def test_masked_array_mask_is_the_mask(V):
    hidden = np.zeros(V.shape, dtype=bool)
    hidden[[0, 3, 7], [1, 4, 2]] = True
    Vm = np.ma.masked_array(np.where(hidden, np.nan, V), mask=hidden)  # NaN where masked
    kw = dict(max_iter=20, seed=0, tol=0)
    got = dnmf.factorize(Vm, [3, 2], **kw)
    want = dnmf.factorize(np.where(hidden, 0.0, V), [3, 2], mask=(~hidden).astype(float), **kw)
    np.testing.assert_array_equal(got.H, want.H)
    np.testing.assert_array_equal(got.loss_history, want.loss_history)
    plain = dnmf.factorize(np.ma.masked_array(V), [3, 2], **kw)  # nothing masked: no mask
    np.testing.assert_array_equal(plain.H, dnmf.factorize(V, [3, 2], **kw).H)
    Ws = [np.ones((10, 2))]
    a = dnmf.solve_h(Vm, Ws, max_iter=30)
    b = dnmf.solve_h(np.where(hidden, 0.0, V), Ws, mask=(~hidden).astype(float), max_iter=30)
    np.testing.assert_array_equal(a.H, b.H)


def test_masked_array_and_mask_together_are_refused(V):
    Vm = np.ma.masked_array(V, mask=V > 0.9)
    with pytest.raises(ValueError, match="V is a numpy masked array and mask= is given too"):
        dnmf.factorize(Vm, 2, mask=np.ones(V.shape))
    with pytest.raises(ValueError, match="V is a numpy masked array and mask= is given too"):
        dnmf.solve_h(Vm, [np.ones((10, 2))], mask=np.ones(V.shape))

"""Reliability of the dnmf library: missing entries stay missing, damaged or inconsistent files
are refused, saving never replaces a link or a device, callbacks stop on any truthy answer,
what cannot fit is refused before it is allocated, and seeds and folds name their range."""

from __future__ import annotations

import os
import re
import stat
import sys
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import dnmf
from dnmf import _memory
from dnmf._io import CHECKSUM_KEY
from dnmf.deblur import DeepNMFPrior
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.distributed import factorize_columns

FACTORIZE_MODULE = sys.modules["dnmf.factorize"]  # the module (dnmf.factorize is the function)


pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),  # short fits
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
]


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        return fn(*args, **kw)


@pytest.fixture
def planted_masked():
    """A planted rank-3 30 x 20 matrix, 30 % of its entries hidden (and 0 under the mask)."""
    rng = np.random.default_rng(1)
    V = rng.random((30, 3)) @ rng.random((3, 20))
    hide = rng.random(V.shape) < 0.3
    return V, hide


# -- missing entries ----------------------------------------------------------------------------
def test_bad_input_masked_array_select_ranks_keeps_the_missing_entries(planted_masked):
    V, hide = planted_masked
    cands = [1, 2, 3, 4, 5]
    masked = dnmf.select_ranks(np.ma.masked_array(V, mask=hide), cands, seed=0)
    explicit = dnmf.select_ranks(np.where(hide, 0.0, V), cands, seed=0, mask=(~hide) * 1.0)
    zeros = dnmf.select_ranks(np.where(hide, 0.0, V), cands, seed=0)
    assert masked.best == 3 and zeros.best != 3  # zeros taken as data pick a wrong rank
    np.testing.assert_array_equal(masked.heldout, explicit.heldout)
    assert not np.allclose(masked.heldout, zeros.heldout)
    assert masked.solver == "masked"


def test_bad_input_masked_array_factorize_auto_keeps_the_missing_entries(planted_masked):
    V, hide = planted_masked
    res = _quiet(dnmf.factorize, np.ma.masked_array(V, mask=hide), "auto", seed=0)
    assert res.ranks == (3,)
    want = _quiet(dnmf.factorize, np.where(hide, 0.0, V), "auto", seed=0, mask=(~hide) * 1.0)
    np.testing.assert_array_equal(res.rank_selection.heldout, want.rank_selection.heldout)
    np.testing.assert_array_equal(res.H, want.H)


def test_bad_input_missing_entries_refuse_the_gram_search(planted_masked):
    V, hide = planted_masked
    with pytest.raises(ValueError, match="solver='gram' cannot honour missing entries"):
        dnmf.select_ranks(np.ma.masked_array(V, mask=hide), [1, 2], solver="gram")
    with pytest.raises(ValueError, match="V is a numpy masked array and mask= is given too"):
        dnmf.select_ranks(np.ma.masked_array(V, mask=hide), [1, 2], mask=np.ones(V.shape))


def test_bad_input_a_fold_of_missing_entries_only_is_refused(planted_masked):
    V, _ = planted_masked
    M = np.ones(V.shape)
    sel = dnmf.select_ranks(V, [1], seed=0, folds=2, max_iter=5, tol=0)
    M[sel.heldout_mask(1)] = 0  # fold 1's held-out entries are all missing
    with pytest.raises(ValueError, match="fold 1 holds out only missing entries"):
        dnmf.select_ranks(V, [1], seed=0, folds=2, mask=M)


def test_bad_input_masked_array_solve_h_and_transform_keep_the_missing_entries(planted_masked):
    V, hide = planted_masked
    W = _quiet(dnmf.factorize, V, 3, seed=0, max_iter=50).Ws
    a = _quiet(dnmf.solve_h, np.ma.masked_array(np.where(hide, 9.0, V), mask=hide), W)
    b = _quiet(dnmf.solve_h, np.where(hide, 0.0, V), W, mask=(~hide) * 1.0)
    np.testing.assert_array_equal(a.H, b.H)
    with pytest.raises(ValueError, match="DeepNMF.fit takes no missing entries"):
        dnmf.DeepNMF(3).fit_transform(np.ma.masked_array(V.T, mask=hide.T))


# -- content checksums and load validation ------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    res = _quiet(dnmf.factorize, rng.random((12, 9)), [4, 2], seed=0, max_iter=10)
    path = tmp_path / "r.npz"
    res.save(path)
    return path


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _zero_bytes_inside(path, entry: str, count: int = 64) -> None:
    """Zero ``count`` bytes in the data of ``entry`` (after its .npy header), in place."""
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY", data.index(f"{entry}.npy".encode()))
    header = int.from_bytes(data[start + 8 : start + 10], "little")
    first = start + 10 + header + 8
    data[first : first + count] = bytes(count)
    path.write_bytes(data)


def test_fault_zeroed_bytes_inside_a_result_array_are_refused(saved):
    before = saved.read_bytes()
    _zero_bytes_inside(saved, "W1")
    assert saved.read_bytes() != before
    with pytest.raises(ValueError, match=r"checksum mismatch in .*r\.npz.*the file is damaged"):
        dnmf.load(saved)


def test_fault_changed_array_in_a_valid_archive_is_refused(saved):
    """Damage the zip layer cannot see (a rewritten archive, valid CRCs): the SHA-256 can."""
    arrays = _arrays(saved)
    arrays["H"] = arrays["H"].copy()
    arrays["H"][0, 0] += 1.0
    np.savez(saved, **arrays)  # keeps the stored checksum of the original content
    with pytest.raises(ValueError, match=r"checksum mismatch in .*r\.npz.*the file is damaged"):
        dnmf.load(saved)


def test_fault_version_2_file_without_its_checksum_is_refused_version_1_loads(saved):
    arrays = _arrays(saved)
    del arrays[CHECKSUM_KEY]
    np.savez(saved, **arrays)
    with pytest.raises(ValueError, match=r"checksum missing in .*r\.npz.*the file is damaged"):
        dnmf.load(saved)
    arrays["format_version"] = np.asarray(1)  # written before checksums: still loads
    np.savez(saved, **arrays)
    back = dnmf.load(saved)
    assert back.ranks == (4, 2)
    np.testing.assert_array_equal(back.H, arrays["H"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"format_version": np.asarray(0)}, "format_version must be an integer from 1 to 2, got 0"),
        ({"format_version": np.asarray(-5)}, "format_version must be an integer from 1 to 2"),
        ({"format_version": np.asarray("1")}, "format_version must be an integer from 1 to 2"),
        ({"format_version": np.asarray(1.9)}, "format_version must be an integer from 1 to 2"),
        ({"n_layers": np.asarray(-1)}, "n_layers must be an integer >= 1, got -1"),
        ({"n_layers": np.asarray(1)}, "n_layers is 1 but the file also holds W2"),
        ({"W2": np.ones((3, 2))}, "W1's columns must equal W2's rows"),
        ({"H": np.ones((3, 9))}, "W2's columns must equal H's rows"),
        ({"W1": np.full((12, 4), np.nan)}, "W1 contains NaN or infinity"),
        ({"H": -np.ones((2, 9))}, "H must be nonnegative"),
        ({"ranks": np.asarray([4, 3])}, "ranks must be the factors' inner sizes [4, 2]"),
        ({"n_iter": np.asarray(-2)}, "n_iter must be integers >= 0"),
        ({"beta": np.asarray(np.nan)}, "beta must be a finite real number"),
        ({"loss_iters": np.arange(2)}, "loss_history (shape"),
    ],
    ids=lambda x: next(iter(x)) if isinstance(x, dict) else None,
)
def test_bad_input_load_validates_every_field(saved, change, field):
    arrays = _arrays(saved)
    arrays.update(change)
    del arrays[CHECKSUM_KEY]  # a version-1 style file: only the field checks stand guard
    if "format_version" not in change:
        arrays["format_version"] = np.asarray(1)
    np.savez(saved, **arrays)
    with pytest.raises(ValueError, match=r"invalid dnmf result file: .*r\.npz") as info:
        dnmf.load(saved)
    assert field in str(info.value)


def _prior() -> DeepNMFPrior:
    m = DeepNMFPrior(size=4, ranks=(6, 3))
    g = torch.Generator().manual_seed(0)
    m.Ws_ = [torch.rand(16, 6, generator=g, dtype=torch.float64), torch.rand(6, 3, generator=g)]
    m.channels_ = 1
    m.loss_history_ = np.linspace(2, 1, 5)
    m.pretrain_histories_ = []
    return m


def _coupled() -> CoupledDeblur:
    m = CoupledDeblur(size=4, context=2, stride=2, ranks=(5,))
    g = torch.Generator().manual_seed(0)
    m.Ws_ = [torch.rand(64, 5, generator=g, dtype=torch.float64)]
    m.W_blur_ = torch.rand(64, 5, generator=g, dtype=torch.float64)
    m.W_out_ = torch.rand(16, 5, generator=g, dtype=torch.float64)
    m.channels_ = 1
    m.loss_history_ = np.linspace(2, 1, 5)
    m.pretrain_histories_ = []
    return m


@pytest.mark.parametrize("make", [_prior, _coupled], ids=["DeepNMFPrior", "CoupledDeblur"])
def test_fault_damaged_deblur_model_files_are_refused(tmp_path, make):
    model = make()
    path = tmp_path / "model.npz"
    model.save(path)
    back = type(model).load(path)
    np.testing.assert_array_equal(back.Ws_[0].numpy(), model.Ws_[0].numpy())
    arrays = _arrays(path)
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][3, 1] = 0.0
    np.savez(path, **arrays)  # valid archive, stale checksum
    with pytest.raises(ValueError, match=r"checksum mismatch in .*model\.npz.*damaged"):
        type(model).load(path)
    model.save(path)
    _zero_bytes_inside(path, "W1")
    with pytest.raises(ValueError, match=r"checksum mismatch in .*model\.npz.*damaged"):
        type(model).load(path)
    del arrays[CHECKSUM_KEY]  # a file written before model files carried checksums
    np.savez(path, **arrays)
    np.testing.assert_array_equal(type(model).load(path).Ws_[0].numpy(), arrays["W1"])


# -- where save writes --------------------------------------------------------------------------
def test_bad_input_save_onto_a_symlink_is_refused(saved, tmp_path):
    target = tmp_path / "target.npz"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    res = dnmf.load(saved)
    with pytest.raises(ValueError, match=r"refusing to write .*link\.npz: it is a symbolic link"):
        res.save(link)
    assert link.is_symlink() and target.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "r.npz", "target.npz"]


def test_bad_input_save_onto_a_fifo_or_device_is_refused(saved, tmp_path):
    res = dnmf.load(saved)
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe\.npz: it is a FIFO \(named pipe\), not a regular"):
        res.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    dev = tmp_path / "null.npz"
    try:  # a device node of our own (root only): never /dev/null itself
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here (needs root)")
    with pytest.raises(ValueError, match=r"null\.npz: it is a character device"):
        res.save(dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.npz", "pipe.npz", "r.npz"]


# -- callbacks ----------------------------------------------------------------------------------
TRUTHY = [
    lambda it, loss: np.True_,
    lambda it, loss: torch.tensor(True),
    lambda it, loss: np.float64(loss) < np.float64(1e9),
    lambda it, loss: 1,
]


@pytest.mark.parametrize("answer", TRUTHY, ids=["np.True_", "tensor", "np-compare", "one"])
@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_bad_input_truthy_callback_answers_stop_the_fit(answer, solver):
    V = np.random.default_rng(0).random((10, 8))
    res = dnmf.factorize(V, 2, max_iter=50, tol=0, seed=0, solver=solver, callback=answer)
    assert res.n_iter == 1 and res.loss_iters[-1] == 1


@pytest.mark.parametrize("answer", [None, False, np.False_, torch.tensor(False), 0])
def test_bad_input_falsy_callback_answers_go_on(answer):
    V = np.random.default_rng(0).random((10, 8))
    res = dnmf.factorize(V, 2, max_iter=7, tol=0, seed=0, callback=lambda it, loss: answer)
    assert res.n_iter == 7


def test_bad_input_batched_callback_stops_matrices_by_their_entry():
    V = np.random.default_rng(0).random((3, 10, 8))
    seen = []

    def per_matrix(it, loss):  # stop matrix 1 at iteration 2, matrix 0 at 4; 2 runs on
        seen.append(np.array(loss))
        return np.array([it >= 4, it >= 2, False])

    res = dnmf.factorize(V, 2, max_iter=9, tol=0, seed=0, callback=per_matrix)
    assert seen[0].shape == (3,)  # one loss per matrix
    np.testing.assert_array_equal(res.n_iter, [4, 2, 9])
    assert res.converged.tolist() == [False, False, False]
    one = dnmf.factorize(V[2], 2, max_iter=9, tol=0, seed=0)  # the others go on unchanged
    np.testing.assert_allclose(res.H[2], one.H, rtol=1e-8)
    everything = dnmf.factorize(
        V, 2, max_iter=9, tol=0, seed=0, callback=lambda it, loss: bool(np.all(loss < 1e9))
    )
    np.testing.assert_array_equal(everything.n_iter, [1, 1, 1])
    target = dnmf.factorize(V, 2, max_iter=9, tol=0, seed=0, callback=lambda it, l: l < 1e9)
    np.testing.assert_array_equal(target.n_iter, [1, 1, 1])


def test_bad_input_batched_callback_of_the_wrong_size_is_refused():
    V = np.random.default_rng(0).random((3, 10, 8))
    with pytest.raises(ValueError, match=r"one per matrix; got an array of shape \(2,\)"):
        dnmf.factorize(V, 2, max_iter=5, seed=0, callback=lambda it, loss: np.ones(2, bool))
    with pytest.raises(ValueError, match=r"got an array of shape \(3,\) where one value"):
        dnmf.factorize(V[0], 2, max_iter=5, seed=0, callback=lambda it, loss: [1, 0, 1])


@pytest.mark.parametrize("ranks", [[4, 2], "auto"])
def test_bad_input_callback_that_is_not_callable_fails_before_any_work(monkeypatch, ranks):
    def boom(*a, **k):
        raise AssertionError("pretraining started")

    monkeypatch.setattr(FACTORIZE_MODULE, "initial_factors", boom)
    monkeypatch.setattr(dnmf.select, "select_ranks", boom)
    V = np.random.default_rng(0).random((10, 8))
    with pytest.raises(ValueError, match="callback must be None or a callable") as info:
        dnmf.factorize(V, ranks, callback=5)
    assert isinstance(info.value, TypeError) and "got 5 of type int" in str(info.value)


def test_bad_input_distributed_callback_truthy_and_not_callable():
    V = np.random.default_rng(0).random((10, 8))
    res = factorize_columns(
        V, 2, init="random", seed=0, max_iter=20, tol=0, callback=lambda it, l: np.True_
    )
    assert res.n_iter == 1
    with pytest.raises(ValueError, match="callback must be None or a callable"):
        factorize_columns(V, 2, seed=0, callback=5)


# -- what cannot fit ----------------------------------------------------------------------------
def test_bad_input_ranks_whose_factors_cannot_fit_are_refused_before_allocating():
    V = np.random.default_rng(0).random((10, 3))
    t0 = time.perf_counter()
    with pytest.raises(MemoryError, match=r"ranks \[1000000\] on V of shape \(10, 3\)") as info:
        dnmf.factorize(V, 10**6, init="random")
    assert isinstance(info.value, ValueError)  # the CLI's bad-argument path catches it
    assert "memory available" in str(info.value) and "lower the ranks" in str(info.value)
    assert time.perf_counter() - t0 < 5
    over = _quiet(dnmf.factorize, V, 20, init="random", max_iter=5, seed=0)  # overcomplete
    assert over.Ws[0].shape == (10, 20)


def test_bad_input_rank_search_that_cannot_fit_is_refused():
    V = np.random.default_rng(0).random((10, 8))
    with pytest.raises(MemoryError, match=r"ranks \[100000000\]"):
        dnmf.select_ranks(V, [1, 10**8], init="random", seed=0)


@pytest.fixture
def little_memory(monkeypatch):
    """Pretend 100 KiB are available."""
    monkeypatch.setattr(_memory, "available_bytes", lambda device=None: 100 * 1024)


def _sparse(m, n):
    rng = np.random.default_rng(0)
    V = rng.random((m, n))
    V[V < 0.9] = 0
    return V


def test_bad_input_scipy_sparse_too_large_to_densify_is_refused(little_memory):
    """The functions that densify sparse input refuse what would not fit; factorize and
    DeepNMF keep it sparse and fit it in the same memory."""
    V = sp.csr_matrix(_sparse(200, 100))  # 160 kB dense
    with pytest.raises(MemoryError, match=r"V is a scipy sparse \(csr\) matrix of shape") as info:
        dnmf.select_ranks(V, [1, 2])
    assert "densifies it" in str(info.value)
    assert "memory available" in str(info.value)
    assert _quiet(dnmf.factorize, V, 2, seed=0, max_iter=5).H.shape == (2, 100)
    assert _quiet(dnmf.DeepNMF(2, max_iter=5).fit, V.T.tocsr()).components_.shape == (2, 200)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_bad_input_torch_sparse_is_kept_sparse(layout, monkeypatch):
    V = _sparse(20, 10)
    T = torch.from_numpy(V)
    S = T.to_sparse() if layout == "coo" else T.to_sparse_csr()
    want = _quiet(dnmf.factorize, T, 2, seed=0, max_iter=5)
    got = _quiet(dnmf.factorize, S, 2, seed=0, max_iter=5)
    assert got.H.layout == torch.strided
    torch.testing.assert_close(got.H, want.H, rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(_memory, "available_bytes", lambda device=None: 1000)
    with pytest.raises(
        MemoryError, match=rf"V is a torch sparse \(sparse_{layout}\) matrix of shape \(20, 10\)"
    ):
        dnmf.select_ranks(S, [1, 2])


def test_available_memory_is_known_here():
    avail = _memory.available_bytes()
    assert avail is None or avail > 0
    assert _memory.format_bytes(7.45 * 2**30) == "7.45 GiB"


# -- seeds, folds, positional n_components -----------------------------------------------------
@pytest.mark.parametrize("seed", [-1, 1.5, 2**64, True, "3"])
def test_bad_input_seeds_name_the_parameter_and_range(seed):
    V = np.random.default_rng(0).random((10, 8))
    msg = re.escape("seed must be None or an int from 0 to 2**64 - 1, got ")
    with pytest.raises(ValueError, match=msg):
        dnmf.select_ranks(V, [1, 2], seed=seed)
    with pytest.raises(ValueError, match=msg):
        dnmf.factorize(V, 2, seed=seed)


def test_bad_input_random_state_names_the_parameter_and_range():
    X = np.random.default_rng(0).random((8, 10))
    for rs in (-1, 2**64):
        with pytest.raises(ValueError, match=re.escape("random_state must be None or an int")):
            dnmf.DeepNMF(2, random_state=rs).fit(X)
    with pytest.raises(ValueError, match="random_state must be None, an int or a RandomState"):
        dnmf.DeepNMF(2, random_state=1.5).fit(X)


def test_seeds_that_select_ranks_hands_its_fits_are_accepted():
    V = np.random.default_rng(0).random((12, 10))
    sel = dnmf.select_ranks(V, [2], seed=np.uint64(2**63), folds=2, max_iter=5, tol=0)
    seed = int(sel.fit_seeds[0, 0])
    assert seed > 2**32
    E = sel.heldout_mask(0)
    res = dnmf.factorize(V * ~E, 2, mask=(~E) * 1.0, seed=seed, max_iter=5, tol=0, solver="hals")
    assert 0.5 * ((V - res.reconstruct())[E] ** 2).sum() / E.sum() == pytest.approx(
        sel.heldout[0, 0, 0], rel=1e-9
    )


@pytest.mark.parametrize("fold", [99, 5, -1, 1.5, True])
def test_bad_input_heldout_mask_names_the_range(fold):
    V = np.random.default_rng(0).random((12, 10))
    sel = dnmf.select_ranks(V, [1, 2], seed=0, max_iter=5, tol=0)
    with pytest.raises(ValueError, match=re.escape("fold must be an int from 0 to 4")):
        sel.heldout_mask(fold)
    assert sel.heldout_mask(np.int64(4)).shape == (12, 10)


def test_bad_input_deepnmf_takes_n_components_by_position():
    X = np.random.default_rng(0).random((8, 10))
    est = _quiet(dnmf.DeepNMF(4, random_state=0, max_iter=5).fit, X)
    assert est.n_components_ == 4 and est.get_params()["n_components"] == 4
    with pytest.raises(TypeError):
        dnmf.DeepNMF(4, None)  # the rest are keyword-only, as scikit-learn's NMF

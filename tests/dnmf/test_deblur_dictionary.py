"""FittedDictionary, the shell of the dictionary priors: their model file keeps its format."""

import json

import numpy as np
import pytest
import torch

from dnmf._io import save_npz_atomic
from dnmf.deblur.dictionary import FittedDictionary
from dnmf.deblur.prior import DeepNMFPrior

PARAMS = dict(size=4, ranks=[6, 3], n_patches=100, fit_iter=2, n_stages=2, stride=2)


def _old_file(path, kind="dnmf-prior-hqs", checksum=True):
    """A model file laid out as the priors wrote it before the shell existed (the arrays
    ``W1…Wk``, ``params``, ``kind``, ``channels``, ``loss_history``, ``pretrain_i``)."""
    rng = np.random.default_rng(0)
    params = {**DeepNMFPrior(**PARAMS).get_params(), "seed": 3}
    arrays = {
        "W1": rng.random((2 * 16, 6)).astype(np.float32),
        "W2": rng.random((6, 3)).astype(np.float32),
        "params": np.asarray(json.dumps(params)),
        "kind": np.asarray(kind),
        "channels": np.asarray(3),
        "loss_history": np.asarray([3.0, 2.0, 1.5]),
        "pretrain_1": np.asarray([5.0, 4.0]),
        "pretrain_2": np.asarray([2.0]),
    }
    if checksum:
        save_npz_atomic(path, arrays)
    else:  # files written before model files carried a checksum
        np.savez(path, **arrays)
    return arrays, params


@pytest.mark.parametrize("checksum", [True, False])
def test_a_file_of_the_earlier_layout_loads(tmp_path, checksum):
    arrays, params = _old_file(tmp_path / "old.npz", checksum=checksum)
    m = DeepNMFPrior.load(tmp_path / "old.npz")
    assert m.get_params() == params and m.seed == 3
    assert [W.shape for W in m.Ws_] == [(32, 6), (6, 3)]
    assert torch.equal(m.Ws_[1], torch.from_numpy(arrays["W2"]))
    assert m.channels_ == 3 and m.n_parameters() == 32 * 6 + 6 * 3
    assert list(m.loss_history_) == [3.0, 2.0, 1.5]
    assert [list(h) for h in m.pretrain_histories_] == [[5.0, 4.0], [2.0]]
    assert m.fit_seconds_ is None  # the file never held it


def test_save_writes_the_same_arrays_back(tmp_path):
    arrays, _ = _old_file(tmp_path / "old.npz")
    DeepNMFPrior.load(tmp_path / "old.npz").save(tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as z:
        assert set(z.files) - {"content_sha256"} == set(arrays)
        for k, v in arrays.items():
            assert np.array_equal(z[k], v), k


def test_another_kind_is_refused_and_an_unfitted_model_names_its_class(tmp_path):
    _old_file(tmp_path / "other.npz", kind="something-else")
    with pytest.raises(ValueError, match="other.npz is not a saved DeepNMFPrior model"):
        DeepNMFPrior.load(tmp_path / "other.npz")
    with pytest.raises(RuntimeError, match="DeepNMFPrior is not fitted"):
        DeepNMFPrior(**PARAMS).fitted_layers()
    with pytest.raises(RuntimeError, match="nothing to save"):
        DeepNMFPrior(**PARAMS).save(tmp_path / "none.npz")
    assert not (tmp_path / "none.npz").exists()
    assert issubclass(DeepNMFPrior, FittedDictionary)

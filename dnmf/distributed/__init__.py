"""``dnmf.distributed``: Deep NMF ``V ≈ W1 … Wk H``, the columns of ``V`` split across processes.

Each process holds a contiguous block of columns of ``V`` (its samples) and the same columns of
``H``; the factors ``W1 … Wk`` are replicated. ``H`` updates are local. A ``W``-layer update
needs sums over all columns, which are small matrices (for β = 2: ``V Hᵀ`` (``m × rk``) and
``H Hᵀ`` (``rk × rk``); for other β the layer's numerator and denominator), so they are summed
with ``all_reduce`` and every process applies the same update. The loss is summed the same
way, so convergence is decided on the global value and every process stops at the same
iteration. The updates, checks and initialisation are those of `dnmf.factorize`
(shared code in ``dnmf._solvers``, ``dnmf._validation`` and ``dnmf._init``).

* `factorize_columns` is the solver; it runs unchanged in a single process when
  ``torch.distributed`` is not initialised (or the group has one process) and then gives the
  same answer as any number of processes on the same columns (to rounding).
* `gather_result` collects ``H`` on rank 0 (``H`` is ``rk × n``, small next to ``V``).
* `run_local` runs it on ``N`` local processes without ``torchrun`` (``gloo`` on
  127.0.0.1), e.g. from a notebook or a test.
* ``python -m dnmf.distributed`` is the ``torchrun`` entry point (see `main`).

Initialisation never needs all of ``V`` in one process: ``init='random'`` draws ``W`` from the
seed and each block of 256 columns of ``H`` from the seed and the block's global index, so any
split of the columns gives the same factors; ``init='nndsvd'|'nndsvda'|'nndsvdar'`` computes
the leading singular vectors ``U`` of a sample of ``init_sample`` columns (chosen from the
seed) gathered on rank 0, broadcasts ``U``, and completes NNDSVD from ``Uᵀ V`` on each shard
with global norms. With ``init_sample >= n`` the sample is all of ``V`` and NNDSVD is exactly
`dnmf.factorize`'s.

Modules: ``_comm`` (collectives), ``_check`` (arguments, checked and agreed on), ``_init``
(keyed and sampled initialisation), ``_fit`` (the solver), ``_local`` (local processes),
``_cli`` (the command line).
"""

from .._validation import INITS
from ._cli import main
from ._fit import ShardedFactorizationResult, factorize_columns, gather_result
from ._init import RANDOM_BLOCK, keyed_column_normal, sample_columns
from ._local import free_port, run_local, run_local_batch

__all__ = [
    "INITS",
    "RANDOM_BLOCK",
    "ShardedFactorizationResult",
    "factorize_columns",
    "free_port",
    "gather_result",
    "keyed_column_normal",
    "main",
    "run_local",
    "run_local_batch",
    "sample_columns",
]

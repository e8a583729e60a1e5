"""`FitSettings`: the settings of one fit, as one checked value.

The public entry points (`dnmf.factorize`, `dnmf.solve_h`, `dnmf.select_ranks`,
`dnmf.distributed.factorize_columns`) take about a dozen keywords; each checks them once
(`dnmf._validation.check_fit_settings`, or the entry point's own checks) and hands one
`FitSettings` down: to the registry (`dnmf._solvers.run_solver`), to the pretraining and
starting factors (`dnmf._fitting`) and to every fit of a rank search
(`dnmf._rank_selection.cv_fits`). Nothing below an entry point declares the keywords again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .loss import Penalties


@dataclass(frozen=True, kw_only=True)
class FitSettings:
    """How one fit runs (every field checked where it was built).

    The solvers read ``solver`` (a resolved name: `dnmf._solvers.resolve_solver`), ``beta``,
    ``max_iter``, ``tol``, ``eps``, ``check_every``, ``loss_every`` (``None``: the solver's
    default) and ``penalties`` (one weight per factor W1, …, Wk, H). The starting factors read
    ``init`` and ``pretrain`` (``True``: ``max_iter`` iterations per layer; an int: that many;
    ``False``: none).
    """

    beta: float
    max_iter: int
    tol: float
    eps: float
    check_every: int
    penalties: Penalties
    solver: str
    loss_every: int | None = None
    init: str = "nndsvda"
    pretrain: bool | int = True

    @property
    def pretrain_iter(self) -> int:
        """Iterations of each layer's pretraining fit."""
        return self.max_iter if self.pretrain is True else int(self.pretrain)

    def pretraining(self, l: int) -> FitSettings:
        """The settings of layer ``l``'s pretraining fit ``X ≈ Wl Hl``: `pretrain_iter`
        iterations, ``Wl``'s and ``H``'s penalties (`Penalties.for_layer`), the loss recorded
        at the solver's default period."""
        return replace(
            self,
            max_iter=self.pretrain_iter,
            penalties=self.penalties.for_layer(l),
            loss_every=None,
        )


__all__ = ["FitSettings"]

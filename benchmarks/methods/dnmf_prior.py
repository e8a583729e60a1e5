"""``dnmf-prior``: non-blind Deep NMF patch prior + half-quadratic splitting with the known blur.

The dictionary ``W1…Wk`` is learned from the **sharp** training images only
(`dnmf.deblur.prior.DeepNMFPrior`: ON/OFF split of mean-removed patches). Restoration
alternates an exact whole-image step with the blur operator and a sparse nonnegative coding
of every overlapping patch at an annealed noise level; the x-step weight is chosen on the
validation images (as ``epll``'s is: both use `benchmarks.methods._hqs_common`).

The first version — multiplicative updates on the codes through the blur, started from the
codes of a Wiener estimate — is an ablation of the experiments (``experiments/mu_prior.py``,
run by ``python -m experiments.deblur_ablation``), not a setting of this method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from benchmarks.methods import _fitted_models as common
from benchmarks.methods._hqs_common import HQSPriorMethod
from dnmf.deblur.prior import DeepNMFPrior


class DNMFPrior(HQSPriorMethod):
    name = "dnmf-prior"
    description = (
        "non-blind: Deep NMF dictionary of sharp mean-removed patches (ON/OFF), "
        "half-quadratic splitting with the known blur and sparse codes of every patch"
    )
    model_class = DeepNMFPrior
    fit_seconds_key = "dictionary_fit_seconds"

    settings: ClassVar[dict[str, Any]] = dict(
        size=6,
        ranks=(128, 64),
        n_patches=20000,
        fit_iter=60,
        colour="opponent",
        stride=2,
        coding="semi",
        depth="product",
        sparsity=1.0,
        sparsity_power=1.5,
        code_iter=2,
        sigma_max=0.1,
        sigma_min=0.005,
        n_stages=8,
        weight=2e-7,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, ranks=(16, 8), n_patches=2000, fit_iter=15, n_stages=3, stride=2
    )
    #: the fast preset's 64 px run must stay within a few minutes for all methods together
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=10000, fit_iter=50, stride=2)

    def model_settings(self) -> dict[str, Any]:
        """`DeepNMFPrior`'s settings for the run's preset; a key it does not take (in
        ``ctx.options["dnmf-prior_settings"]``) is a ``ValueError`` naming it."""
        s = super().model_settings()
        known = set(DeepNMFPrior().get_params()) - {"seed"}  # the seed is the run's
        unknown = sorted(set(s) - known)
        if unknown:
            raise ValueError(
                f"{self.name}_settings: unknown setting(s) {unknown} (DeepNMFPrior takes "
                f"{sorted(known)}; the multiplicative-update prior, once the setting "
                "solver='mu', is experiments/mu_prior.py)"
            )
        return s

    def figures(self, out_dir: Path) -> list[Path]:
        m = self.model
        if m is None or m.Ws_ is None:
            return []
        out: list[Path] = []
        p = common.plot_losses(
            Path(out_dir) / common.LOSS_FIG,
            f"{self.name}: ranks {list(m.ranks)} ({self.ctx.preset.name} preset)",
            m.loss_history_,
            m.pretrain_histories_,
        )
        if p is not None:
            out.append(p)
        c = 1 if m.colour == "opponent" else (m.channels_ or 3)
        W = m.patch_prior().signed  # the signed atoms the z-step codes with
        layers = len(m.Ws_) if m.depth == "product" else 1
        what = f"signed atoms of {' '.join(f'W{i + 1}' for i in range(layers))}"
        out.append(
            common.plot_atoms(
                Path(out_dir) / common.ATOMS_FIG,
                [(what, common.tile_atoms(W, c, m.size))],
                f"{self.name}: learned sharp-patch atoms (first 64)",
            )
        )
        return out


METHOD = DNMFPrior

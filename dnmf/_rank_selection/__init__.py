"""Rank selection by masked (entry-wise) cross-validation: the machinery under the public
`dnmf.select` (`dnmf.select_ranks`, `dnmf.RankSelection`).

* `holdout` — which entries each fold hides (the block pattern and i.i.d. entries);
* `cv` — the batched Gram solver of every candidate × fold × restart (β = 2, blocks);
* `cv_layers` — the layer-wise scores of deep candidates;
* `cv_fits` — every fit of a search (starts, pretraining, the engine that runs them, scores);
* `rule` — the rules that choose a candidate; `result` — `RankSelection`, what a search returns.

Imports run one way: `holdout` and `rule` at the bottom; `cv`, `cv_layers` and `result` on
them; `cv_fits` on those. They build on the solvers (`dnmf._solvers`) and the starting factors
(`dnmf._init`), never on `dnmf.select` nor on this package's ``__init__`` (which imports
nothing).
"""

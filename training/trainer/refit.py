"""After the search: the chosen params and number of trees trained again on more weeks.

Refit (`--refit`): on the training, validation and `--refit-with` rows (the latest weeks, which the
shipped model must know); that model is the output, and `cutoffs.refit` in model.json lists the
extra weeks.

Rolling scores (`--rolling g1,g2,...`, cutoffs of `--refit-with` weeks): for each, the chosen
params and trees trained on every row before it score that week's rows, what the recipe would have
shipped then on a week it never saw; written to --out/rolling_scores.f32 (little-endian float32,
one per `--refit-with` row in file order, NaN for rows of weeks not listed) for a gate to judge
(training/fit.ts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .common import TrainError, log
from .data import RankData
from .distributed import DaskTrainer
from .search import Trained


def train_on(parts: Sequence[RankData], trained: Trained, dask: DaskTrainer | None = None) -> Any:
    """A booster with `trained`'s params and number of trees, on the queries of `parts` together
    (on the Dask cluster with `dask`)."""
    import lightgbm as lgb

    x = np.concatenate([d.x for d in parts])
    y = np.concatenate([d.y for d in parts])
    sizes = np.concatenate([np.diff(d.bounds) for d in parts])
    if dask is not None:
        return dask.train(trained.params, x, y, sizes, trained.best_iteration)
    data = lgb.Dataset(x, y, group=sizes, params={"feature_pre_filter": False, "verbose": -1})
    return lgb.train(trained.params, data, num_boost_round=trained.best_iteration)


def refit(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained,
          dask: DaskTrainer | None, thin: Callable[[RankData], RankData]) -> Trained:
    """Retrain with the chosen params and rounds on the training, validation and `extra` weeks.

    The latest weeks are, for fashion, the most informative: the shipped model must know them. The
    searched model's `valid_map` is kept (measured before, on the held-out validation week).
    Queries without a positive carry no LambdaRank gradient and are left out, as in training;
    `va` and `extra` go through `thin` as `tr` did (cli.py `--negatives`).
    """
    parts = [tr] + [_with_positive(thin(d)) for d in (va, *extra)]
    booster = train_on(parts, trained, dask)
    log(f"refit on {' + '.join(str(d.queries) for d in parts)} queries, "
        f"{trained.best_iteration} rounds")
    return Trained(booster, trained.params, trained.best_iteration, trained.valid_map, trained.trials,
                   refit=True, trial=trained.trial, started=trained.started, seconds=trained.seconds)


def _with_positive(d: RankData) -> RankData:
    return d.subset_queries(d.positives_per_query() > 0)


def rolling_scores(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained,
                   weeks: Sequence[int], dask: DaskTrainer | None,
                   thin: Callable[[RankData], RankData]) -> np.ndarray:
    """Scores of the `extra` rows of each week in `weeks` by what the recipe would have shipped then.

    For a week starting at cutoff g: the chosen params and number of trees trained on every row
    before g (training, validation and earlier `extra` weeks), scoring the rows of g. One float
    per `extra` row, in file order (files concatenated); NaN for rows of weeks not listed. A gate
    judges these: fresh models on weeks they never saw, as the shipped model will be. They train
    on `va` and `extra` through `thin`, as the refit does, and score every row.
    """
    out = [np.full(d.rows, np.nan, dtype=np.float32) for d in extra]
    pool = [tr, thin(va), *(thin(d) for d in extra)]
    for g in sorted(set(int(w) for w in weeks)):
        parts = []
        for d in pool:
            qc = d.query_cutoffs("rolling scores")
            keep = (qc < g) & (d.positives_per_query() > 0)
            if keep.any():
                parts.append(d.subset_queries(keep))
        if not parts:
            raise TrainError(f"no training rows before the rolling week {g}")
        booster = train_on(parts, trained, dask)
        scored = 0
        for i, d in enumerate(extra):
            rows = np.repeat(d.query_cutoffs("rolling scores") == g, np.diff(d.bounds))
            if rows.any():
                out[i][rows] = booster.predict(d.x[rows]).astype(np.float32)
                scored += int(rows.sum())
        week = datetime.fromtimestamp(g / 1000, timezone.utc).date().isoformat()
        log(f"rolling week {week}: trained on {sum(d.queries for d in parts)} queries, "
            f"scored {scored} rows")
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

"""Training on a Dask cluster (`--dask ADDRESS`): the same boosters as the local path, trained by
`lightgbm.dask.DaskLGBMRanker` (LightGBM's data-parallel learner, one LightGBM process per Dask
worker) instead of `lightgbm.train`.

- Rows go to the workers as Dask arrays split at query boundaries: `group` is chunked so that
  every query's rows sit in one partition (LambdaRank needs a whole query in one place), one
  partition per worker (or `--dask-partitions`).
- Early stopping: LightGBM's Dask interface has none, and its evaluation results come from one
  worker's share of the validation rows only. So each trial trains `--num-boost-round` trees and
  the best iteration is found afterwards on the whole validation file, as `lgb.early_stopping`
  would have found it (the first iteration after which `--early-stopping` rounds bring no gain),
  on MAP@12 (metrics.py; LightGBM's own map@12 differs only by a constant for queries without a
  positive, which does not move the best iteration). The booster is cut there, as locally.
- The rows are read by this process (the trainer's input is one Arrow file) and sent to the
  workers: the cluster spreads the training's CPU and memory, not the reading of the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import TrainError, log
from .metrics import map_at_k


class DaskTrainer:
    """A connection to a Dask scheduler that trains LambdaRank boosters on its workers."""

    def __init__(self, address: str, partitions: int | None = None) -> None:
        try:
            from distributed import Client
        except ImportError as err:  # pragma: no cover - the venv pins dask[distributed]
            raise TrainError("--dask needs dask[distributed] (training/requirements.txt)") from err
        try:
            # the default client: lightgbm.dask waits on futures through it
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise TrainError(f"--dask {address}: cannot reach the Dask scheduler: {err}") from err
        workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
        if workers == 0:
            self.client.close()
            raise TrainError(f"--dask {address}: the scheduler has no workers")
        self.workers = workers
        self.partitions = partitions or workers
        log(f"dask: {address}, {workers} workers, {self.partitions} partitions per data set")

    def close(self) -> None:
        self.client.close()

    def train(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray, sizes: np.ndarray,
              rounds: int) -> Any:
        """A `lightgbm.Booster` of `rounds` trees trained on the cluster (queries of `sizes` rows)."""
        import lightgbm as lgb

        dx, dy, dg = self.arrays(x, y, sizes)
        kwargs = dict(params)
        # lightgbm.dask sets each worker's threads from the worker's own thread count
        kwargs.pop("num_threads", None)
        seed = kwargs.pop("seed", None)
        model = lgb.DaskLGBMRanker(client=self.client, n_estimators=rounds, random_state=seed,
                                   **kwargs)
        model.fit(dx, dy, group=dg)
        return model.to_local().booster_

    def train_binary(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray, sizes: np.ndarray,
                     rounds: int) -> Any:
        """A `lightgbm.Booster` of `rounds` trees with the binary objective (`y` 0 or 1), the rows
        partitioned by whole queries as `train` does."""
        import lightgbm as lgb

        dx, dy, _ = self.arrays(x, y, sizes)
        kwargs = dict(params)
        kwargs.pop("num_threads", None)
        seed = kwargs.pop("seed", None)
        model = lgb.DaskLGBMClassifier(client=self.client, n_estimators=rounds, random_state=seed,
                                       **kwargs)
        model.fit(dx, dy)
        return model.to_local().booster_

    def arrays(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> tuple[Any, Any, Any]:
        """`x`, `y` and the query sizes as Dask arrays with aligned chunks, no query split."""
        import dask.array as da

        r_chunks, q_chunks = query_chunks(sizes, self.partitions)
        dx = da.from_array(x, chunks=(r_chunks, x.shape[1]))
        dy = da.from_array(y, chunks=(r_chunks,))
        dg = da.from_array(sizes, chunks=(q_chunks,))
        px, py, pg = self.client.persist([dx, dy, dg])
        return px, py, pg


def query_chunks(sizes: np.ndarray, parts: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rows and queries per partition: at most `parts` blocks of whole queries (`sizes` rows
    each, in order), cut where the running row count passes each equal share of the rows."""
    sizes = np.asarray(sizes, dtype=np.int64)
    queries = len(sizes)
    if queries == 0:
        return (0,), (0,)
    parts = max(1, min(parts, queries))
    ends = np.cumsum(sizes)
    targets = (np.arange(1, parts) * ends[-1]) // parts
    # the first query whose rows reach a target closes a block
    cuts = np.unique(np.searchsorted(ends, targets, side="left") + 1)
    cuts = cuts[(cuts > 0) & (cuts < queries)]
    q_edges = np.concatenate(([0], cuts, [queries])).astype(np.int64)
    row_edges = np.concatenate(([0], ends))[q_edges]
    return (tuple(int(n) for n in np.diff(row_edges)), tuple(int(n) for n in np.diff(q_edges)))


def best_iteration(booster: Any, va: Any, early_stopping: int) -> tuple[int, float]:
    """Where `lgb.early_stopping(early_stopping)` on the validation rows would have stopped:
    the iteration with the best MAP@12 before `early_stopping` rounds without a gain (the first
    best on ties). Scores after each tree are the running sum of the trees' raw outputs."""
    total = booster.current_iteration()
    if total == 0:
        raise TrainError("the Dask training returned a model without trees")
    scores = np.zeros(va.rows, dtype=np.float64)
    best_it, best = 0, -np.inf
    for it in range(1, total + 1):
        scores += booster.predict(va.x, start_iteration=it - 1, num_iteration=1, raw_score=True)
        value = map_at_k(scores, va.y, va.bounds, va.items)[0]
        if value > best:
            best_it, best = it, value
        elif it - best_it >= early_stopping:
            break
    return best_it, float(best)

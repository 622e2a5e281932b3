"""distributed.py without a cluster: partitions never split a query, and the best iteration is
where LightGBM's early stopping stops (the cluster itself: training/dask.test.ts)."""

from __future__ import annotations

import numpy as np
import pytest

from .data import query_bounds
from .distributed import best_iteration, query_chunks
from .metrics import map_at_k
from .search import base_params
from .testdata import planted


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 50])
def test_partitions_hold_whole_queries(parts: int) -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 40, size=23)
    rows, queries = query_chunks(sizes, parts)
    assert len(rows) == len(queries) <= min(parts, len(sizes))
    assert sum(rows) == sizes.sum() and sum(queries) == len(sizes)
    # each partition's rows are exactly its queries' rows
    q_edges = np.concatenate(([0], np.cumsum(queries)))
    for i, n in enumerate(rows):
        assert n == sizes[q_edges[i]:q_edges[i + 1]].sum() and n > 0
    if parts <= len(sizes):
        # blocks of about equal rows: none more than a share plus one query over
        assert max(rows) <= sizes.sum() / len(rows) + sizes.max()


def test_no_queries() -> None:
    assert query_chunks(np.zeros(0, dtype=np.int64), 2) == ((0,), (0,))


def test_best_iteration_matches_lightgbm_early_stopping() -> None:
    import lightgbm as lgb

    from .data import RankData

    rng = np.random.default_rng(5)
    tq, ta, tl, tx = planted(rng, 200, 15)
    vq, va, vl, vx = planted(rng, 100, 15, qid0=5000)

    def rank_data(q, a, lab, x):  # type: ignore[no-untyped-def]
        items = np.unique(np.asarray(a), return_inverse=True)[1].astype(np.int64)
        return RankData(path=None, features=[], cutoffs=[], x=x, y=lab.astype(np.int32), qid=q,
                        items=items, bounds=query_bounds(q))

    va_data = rank_data(vq, va, vl, vx)
    params = {**base_params(1), "num_leaves": 7, "learning_rate": 0.3, "min_data_in_leaf": 20}
    dtrain = lgb.Dataset(tx, tl, group=np.diff(query_bounds(tq)))
    dvalid = lgb.Dataset(vx, vl, group=np.diff(va_data.bounds), reference=dtrain)
    stopped = lgb.train(params, dtrain, num_boost_round=80, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(5, verbose=False)])
    full = lgb.train(params, dtrain, num_boost_round=80)
    best_it, value = best_iteration(full, va_data, 5)
    assert best_it == stopped.best_iteration
    expected = map_at_k(full.predict(vx, num_iteration=best_it), va_data.y, va_data.bounds,
                        va_data.items)[0]
    assert value == pytest.approx(expected, abs=1e-9)

"""MAP@12 (`map_at_k`, `average_precision_at_k`), the definition of the TypeScript evaluation:

  * per query, rank its rows by score, descending; equal scores keep the order of the rows in the
    file (a stable sort);
  * the top 12 are the first 12 entries of that list; an article repeated in it counts once: a
    later occurrence still takes its position but is never a hit (the Kaggle `apk` convention, as
    `apAtK` in evaluation/ranking-metrics.ts);
  * relevant = the distinct articles of the query with label > 0 (so it is measured over the
    candidates: a purchase that was not a candidate is not counted);
  * AP@12 = sum_{k=1..12} P(k) * rel(k) / min(|relevant|, 12), where P(k) = relevant among the top
    k / k and rel(k) = 1 when the article at position k is relevant and not already higher up;
    AP@12 = 0 for a query with no relevant article;
  * MAP@12 = the mean of AP@12 over ALL queries of the file (those without a purchase count as 0).

The search maximises it on the validation file (search.py); model.json reports it (output.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from .common import K
from .data import query_bounds  # noqa: F401  (re-exported: the metrics' query layout)

if TYPE_CHECKING:
    from .data import RankData


def average_precision_at_k(
    ranked: Iterable[Hashable], relevant: Iterable[Hashable], k: int = K
) -> float:
    """AP@k of a ranked list (best first) against a set of relevant items; see the module doc.

    A repeated item keeps its position but is never a hit again; no relevant item gives 0.
    """
    rel = set(relevant)
    if not rel or k <= 0:
        return 0.0
    seen: set[Hashable] = set()
    hits = 0
    total = 0.0
    for position, item in enumerate(ranked, start=1):
        if position > k:
            break
        if item in seen:
            continue
        seen.add(item)
        if item in rel:
            hits += 1
            total += hits / position
    return total / min(len(rel), k)


def map_at_k(
    scores: np.ndarray,
    labels: np.ndarray,
    bounds: np.ndarray,
    items: np.ndarray | None = None,
    k: int = K,
) -> tuple[float, np.ndarray]:
    """MAP@k over all queries (rows bounds[i]:bounds[i+1]); returns (mean, AP per query).

    `items` identifies the article of each row (a repeated article is a hit at most once); without
    it every row is a distinct item.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if items is None:
        items = np.arange(len(scores))
    nq = len(bounds) - 1
    ap = np.zeros(nq, dtype=np.float64)
    for q in range(nq):
        s, e = int(bounds[q]), int(bounds[q + 1])
        lab = labels[s:e]
        positive = lab > 0
        if not positive.any():
            continue
        its = items[s:e]
        order = np.argsort(-scores[s:e], kind="stable")
        ap[q] = average_precision_at_k(its[order].tolist(), its[positive].tolist(), k)
    return (float(ap.mean()) if nq else 0.0), ap


def random_map(va: RankData, seed: int) -> float:
    """MAP@12 of random scores on `va` (model.json's valid_map12_random: what chance gets)."""
    rng = np.random.default_rng(seed)
    return map_at_k(rng.random(va.rows), va.y, va.bounds, va.items)[0]

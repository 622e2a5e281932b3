"""MAP@12 by hand (metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from .metrics import average_precision_at_k, map_at_k, query_bounds


def test_ap_fewer_relevant_than_k() -> None:
    # hits at positions 2 and 4: (1/2 + 2/4) / min(2, 12)
    assert average_precision_at_k(["a", "b", "c", "d"], {"b", "d"}) == pytest.approx(0.5)
    # one relevant article at position 3 of a list of 3
    assert average_precision_at_k(["x", "y", "z"], {"z"}) == pytest.approx(1 / 3)


def test_ap_no_relevant_is_zero() -> None:
    assert average_precision_at_k(["a", "b"], set()) == 0.0
    assert average_precision_at_k([], {"a"}) == 0.0


def test_ap_all_relevant_at_top() -> None:
    assert average_precision_at_k(["a", "b", "c", "d"], {"a", "b", "c"}) == 1.0
    # 15 relevant, all on top: the denominator is min(15, 12)
    items = [f"r{i}" for i in range(15)]
    assert average_precision_at_k(items, set(items)) == 1.0


def test_ap_cut_at_12() -> None:
    ranked = [f"n{i}" for i in range(12)] + ["hit"]
    assert average_precision_at_k(ranked, {"hit"}) == 0.0
    ranked = [f"n{i}" for i in range(11)] + ["hit"]
    assert average_precision_at_k(ranked, {"hit"}) == pytest.approx(1 / 12)


def test_ap_duplicates_ignored() -> None:
    # Kaggle apk: the second "a" takes position 2 but is no hit: (1/1 + 2/3) / 2
    assert average_precision_at_k(["a", "a", "b"], {"a", "b"}) == pytest.approx(5 / 6)
    # a hit repeated never counts twice, even with one relevant article
    assert average_precision_at_k(["a", "a", "a"], {"a"}) == 1.0
    # repeats still take positions: the hit is at 4
    assert average_precision_at_k(["x", "x", "x", "a"], {"a"}) == pytest.approx(1 / 4)
    # a relevant article listed twice among the relevant counts once
    assert average_precision_at_k(["a", "c"], ["a", "a", "b"]) == pytest.approx(1 / 2)


def test_map_over_queries_counts_queries_without_positive_and_keeps_ties_stable() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.2, 0.3, 0.3, 0.0])
    labels = np.array([0, 1, 1, 0, 0, 0, 1, 1])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 7])
    bounds = np.array([0, 3, 5, 8])
    mean, ap = map_at_k(scores, labels, bounds, items)
    # q0: ranked 1, 3(hit), 2(hit) -> (1/2 + 2/3) / 2; q1: no positive -> 0
    # q2: tie 6 vs 7 keeps file order: 6, 7(hit), 7 again (no hit) -> 1/2 / min(1, 12)
    assert ap.tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2, 0.0, 1 / 2])
    assert mean == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0 + 1 / 2) / 3)
    # the same numbers through the list form
    assert average_precision_at_k([1, 3, 2], {2, 3}) == pytest.approx(ap[0])

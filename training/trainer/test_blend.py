"""The binary blend (blend.py): one booster whose raw score is the LambdaRank model's plus the
scaled binary model's, the scale from the within-query spreads, and clear errors."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from .blend import SPEEDUP, binary_params, binary_rounds, blend_scale, merge, within_query_sd
from .common import TrainError
from .metrics import query_bounds
from .search import DEFAULT_TRIAL, base_params
from .testdata import planted


def _boosters(rounds: int = 25) -> tuple[lgb.Booster, lgb.Booster, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    qid, _, label, x = planted(rng, 120, 15)
    sizes = np.diff(query_bounds(qid))
    params = {**base_params(42), **DEFAULT_TRIAL, "min_data_in_leaf": 10}
    rank = lgb.train(params, lgb.Dataset(x, label, group=sizes), num_boost_round=rounds)
    binary = lgb.train(binary_params(params), lgb.Dataset(x, (label > 0).astype(np.int32)),
                       num_boost_round=rounds)
    return rank, binary, x, query_bounds(qid)


def test_merged_model_scores_rank_plus_scaled_binary() -> None:
    rank, binary, x, _ = _boosters()
    merged = merge(rank, binary, 0.37)
    assert merged.num_trees() == rank.num_trees() + binary.num_trees()
    want = rank.predict(x, raw_score=True) + 0.37 * binary.predict(x, raw_score=True)
    np.testing.assert_allclose(merged.predict(x), want, rtol=1e-12, atol=1e-12)
    # the header is the ranking model's: one model of the features it was trained on
    assert merged.feature_name() == rank.feature_name()
    assert "objective=lambdarank" in merged.model_to_string()
    # and it survives a save and a load, as model.lgb.txt
    again = lgb.Booster(model_str=merged.model_to_string())
    np.testing.assert_array_equal(again.predict(x), merged.predict(x))


def test_scale_puts_both_models_on_one_spread_then_weighs_the_binary() -> None:
    rank, binary, x, bounds = _boosters()
    scale = blend_scale(rank, binary, x, bounds, 0.6)
    s_rank = within_query_sd(rank.predict(x, raw_score=True), bounds)
    s_binary = within_query_sd(binary.predict(x, raw_score=True), bounds)
    assert scale == pytest.approx(0.6 * s_rank / s_binary)
    blended_part = within_query_sd(scale * binary.predict(x, raw_score=True), bounds)
    assert blended_part == pytest.approx(0.6 * s_rank)


def test_within_query_sd_averages_over_queries_of_two_rows_or_more() -> None:
    scores = np.array([1.0, 3.0, 4.0, 4.0, 4.0, 2.0, 7.0])
    bounds = np.array([0, 2, 5, 6, 7])  # sd 1, sd 0, one row, one row
    assert within_query_sd(scores, bounds) == pytest.approx(0.5)
    assert within_query_sd(scores[:1], np.array([0, 1])) == 0.0


def test_a_model_that_scores_every_candidate_alike_is_not_blended() -> None:
    rank, binary, x, bounds = _boosters()
    flat = lgb.train({**binary_params(base_params(1)), "min_data_in_leaf": 10_000},
                     lgb.Dataset(x, np.zeros(len(x), dtype=np.int32) | (np.arange(len(x)) == 0)),
                     num_boost_round=2)
    with pytest.raises(TrainError, match="scores every candidate of a query alike"):
        blend_scale(rank, flat, x, bounds, 0.6)


def test_models_of_different_features_are_not_merged() -> None:
    rank, _, x, _ = _boosters()
    other = lgb.train(binary_params(base_params(1)),
                      lgb.Dataset(x[:, :3], (np.arange(len(x)) % 7 == 0).astype(np.int32)),
                      num_boost_round=3)
    with pytest.raises(TrainError, match="6 and 3 features"):
        merge(rank, other, 1.0)


def test_the_binary_booster_grows_a_third_of_the_trees_at_three_times_the_learning_rate() -> None:
    params = {**base_params(42), **DEFAULT_TRIAL}
    binary = binary_params(params)
    assert SPEEDUP == 3
    assert binary["learning_rate"] == pytest.approx(3 * DEFAULT_TRIAL["learning_rate"])
    assert binary["objective"] == "binary" and "eval_at" not in binary
    assert params["learning_rate"] == DEFAULT_TRIAL["learning_rate"]  # the ranking one's unchanged
    assert [binary_rounds(n) for n in (300, 500, 31, 2, 1)] == [100, 167, 10, 1, 1]

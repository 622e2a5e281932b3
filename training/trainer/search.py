"""The Optuna search: LightGBM `objective=lambdarank`, `metric=map`, `eval_at=[12]`, one group per
qid, early stopping on the validation file (LightGBM's own map@12, which scores a query without a
positive as 1: a constant that does not move the best iteration). Training queries without any
positive carry no LambdaRank gradient and are dropped before (cli.py; metrics: train_queries = the
queries trained on, dropped_train_queries_without_positive); validation keeps every query.

Optuna (TPESampler(seed), the first trial LightGBM-ish defaults, `default_trial`) searches
num_leaves, learning_rate, min_data_in_leaf, feature_fraction, bagging_fraction, lambda_l2 and
max_depth, maximising `map_at_k` (metrics.py) on the validation file; every trial's booster, cut
at its best iteration, is kept, best first: the caller ships the first whose ONNX export passes
the parity check (parity.py). Training is deterministic: deterministic=True, force_col_wise,
seed; the same model whatever its `num_threads` (`--threads`, 2 by default: a backtest runs
several trainers of one thread side by side).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .common import K, log
from .data import RankData
from .distributed import DaskTrainer, best_iteration
from .metrics import map_at_k


def base_params(seed: int, threads: int = 2) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "map",
        "eval_at": [K],
        "deterministic": True,
        "force_col_wise": True,  # no timing-based row/col choice: same data, same model
        # LightGBM's threads: with deterministic and force_col_wise the model does not depend
        # on them (a test trains with 1 and 2)
        "num_threads": threads,
        "seed": seed,
        "verbose": -1,
        # the Dataset is reused across trials that change min_data_in_leaf
        "feature_pre_filter": False,
        "bagging_freq": 1,
    }


# Small trees and a low learning rate: a small shop's training weeks hold a few hundred queries
# with a purchase among the candidates, where larger trees overfit (measured in the backtest).
# Gentler fits (L2 50, learning rate 0.01) score the same over three blocks of hm-sample's weeks,
# better on one and worse on another (docs/evaluation.md, "Weeks no setting was chosen on").
DEFAULT_TRIAL = {
    "num_leaves": 7,
    "learning_rate": 0.03,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_depth": 8,
}


def default_trial(trees: tuple[int, int] | None = None) -> dict[str, Any]:
    """The first trial's parameters; `trees` (leaves, least rows per leaf) in place of the
    default's small trees: the recipe's larger trees from a data size on (cli.py `--large-trees`,
    training/recipe.ts `large`)."""
    if trees is None:
        return dict(DEFAULT_TRIAL)
    return {**DEFAULT_TRIAL, "num_leaves": trees[0], "min_data_in_leaf": trees[1]}


def suggest(trial: Any) -> dict[str, Any]:
    return {
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 12),
    }


def stopping_with_floor(stopping_rounds: int, floor: int) -> Any:
    """LightGBM's early stopping, with a floor on the trees kept.

    Early stopping on a small validation week often stops after a handful of trees; the floor
    keeps `floor` of them then. Where `lgb.early_stopping` would stop with a best iteration below
    the floor, this callback lets training go on, unchecked, to the floor's tree and stops there
    with `best_iteration = floor`. Boosting does not look at the validation rows, so those trees
    are the ones a second training of `floor` rounds with the same params would grow (the trainer
    did that before; test_cli.py checks the two agree), for one training instead of two.
    """
    import lightgbm as lgb
    from lightgbm.callback import EarlyStopException

    inner = lgb.early_stopping(stopping_rounds, verbose=False)
    floored: list[Any] = []  # the best score where early stopping would have stopped

    def callback(env: Any) -> None:
        if not floored:
            try:
                inner(env)
                return
            except EarlyStopException as stop:
                if stop.best_iteration + 1 >= floor:
                    raise
                floored.append(stop.best_score)
        if env.iteration + 1 >= floor:
            raise EarlyStopException(best_iteration=floor - 1, best_score=floored[0])

    callback.order = inner.order  # type: ignore[attr-defined]
    return callback


@dataclass
class Trained:
    booster: Any  # lightgbm.Booster holding exactly best_iteration trees; None: not searched
    params: dict[str, Any]
    best_iteration: int
    valid_map: float | None  # on the early-stopping week; None: not searched
    trials: int
    refit: bool = False
    # The Optuna trial (number, start, seconds), for tracking; None when not from a trial.
    trial: int | None = None
    started: datetime | None = None
    seconds: float | None = None
    # The weight of a binary model blended into each fit after the search (blend.py; 0: none).
    blend: float = 0.0


def unsearched(*, seed: int, rounds: int, trees: tuple[int, int] | None = None,
               threads: int = 2) -> Trained:
    """The first trial's parameters (`default_trial(trees)`) and `rounds` trees without a search
    model (`--no-search`): with one trial and a fixed number of trees the search has nothing to
    choose, so the refit trains the shipped model straight away. No booster, no validation
    score."""
    params = {**base_params(seed, threads), **default_trial(trees)}
    shown = {k: params[k] for k in DEFAULT_TRIAL}
    log(f"trial 1/1: not searched, the first trial's parameters and {rounds} trees go to the "
        f"refit {json.dumps(shown)}")
    return Trained(None, params, rounds, None, 1, trial=0)


def search(
    tr: RankData,
    va: RankData,
    *,
    trials: int,
    seed: int,
    num_boost_round: int,
    early_stopping: int,
    min_rounds: int = 0,
    trees: tuple[int, int] | None = None,
    dask: DaskTrainer | None = None,
    threads: int = 2,
) -> list[Trained]:
    """Every trial's model, best validation MAP@12 first; the first trial is `default_trial(trees)`.
    With `dask`, each trial trains on the Dask cluster and early stopping is applied afterwards
    (distributed.py)."""
    import lightgbm as lgb
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dtrain = lgb.Dataset(
        tr.x, tr.y, group=np.diff(tr.bounds), free_raw_data=False,
        params={"feature_pre_filter": False, "verbose": -1},
    )
    dvalid = lgb.Dataset(
        va.x, va.y, group=np.diff(va.bounds), reference=dtrain, free_raw_data=False
    )
    base = base_params(seed, threads)
    candidates: list[dict[str, Any]] = []

    def train_trial(params: dict[str, Any]) -> tuple[Any, int]:
        if dask is not None:
            booster = dask.train(params, tr.x, tr.y, np.diff(tr.bounds), num_boost_round)
            best_it, _ = best_iteration(booster, va, early_stopping)
            # the booster holds num_boost_round trees: a floor needs no second training
            return booster, max(best_it, min(min_rounds, num_boost_round))
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[stopping_with_floor(early_stopping, min(min_rounds, num_boost_round))],
        )
        return booster, int(booster.best_iteration or booster.current_iteration())

    def objective(trial: Any) -> float:
        started = time.perf_counter()
        params = {**base, **suggest(trial)}
        booster, best_it = train_trial(params)
        scores = booster.predict(va.x, num_iteration=best_it)
        value, _ = map_at_k(scores, va.y, va.bounds, va.items)
        trial.set_user_attr("best_iteration", best_it)
        seconds = round(time.perf_counter() - started, 3)
        trial.set_user_attr("seconds", seconds)
        candidates.append(
            {
                "map": value,
                "model": booster.model_to_string(num_iteration=best_it),
                "params": params,
                "best_iteration": best_it,
                "trial": trial.number,
                "started": trial.datetime_start,
                "seconds": seconds,
            }
        )
        return value

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, trials // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(default_trial(trees))
    study.optimize(objective, n_trials=trials, callbacks=[_report(trials)])
    # Best first (ties: the earlier trial); the caller takes the first that passes parity.
    candidates.sort(key=lambda c: (-c["map"], c["trial"]))
    return [
        Trained(
            lgb.Booster(model_str=c["model"]), c["params"], c["best_iteration"], c["map"], trials,
            trial=c["trial"], started=c["started"], seconds=c["seconds"],
        )
        for c in candidates
    ]


def _report(trials: int) -> Any:
    """The Optuna callback logging one line per trial (training/cycle.ts counts them)."""

    def report(study: Any, trial: Any) -> None:
        shown = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in trial.params.items()
        }
        log(
            f"trial {trial.number + 1}/{trials}: map@12={trial.value:.5f} "
            f"best={study.best_value:.5f} iterations={trial.user_attrs.get('best_iteration')} "
            f"({trial.user_attrs.get('seconds')}s) {json.dumps(shown)}"
        )

    return report

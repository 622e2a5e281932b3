"""After the search: the chosen params and number of trees trained again on more weeks.

Refit (`--refit`): on the training, validation and `--refit-with` rows (the latest weeks, which the
shipped model must know); that model is the output, and `cutoffs.refit` in model.json lists the
extra weeks. With `--fit-weeks N`, only the rows of the N weeks before the end (the last
`--refit-with` week's cutoff + 7 days), `--history` rows included when the window reaches them.

Rolling scores (`--rolling g1,g2,...`, cutoffs of `--refit-with` weeks): for each, the chosen
params and trees trained on every row before it (with `--fit-weeks N`, of the N weeks before it,
`--history` rows included) score that week's rows, what the recipe would have shipped then on a
week it never saw; written to --out/rolling_scores.f32 (little-endian float32, one per
`--refit-with` row in file order, NaN for rows of weeks not listed) for a gate to judge
(training/fit.ts). With `--fit-cache DIR` each rolling fit's model is kept in DIR under a hash of
everything it learns from and with (the trainer's code and LightGBM's version, params but its
threads, trees, blend, the rows' features, labels and queries), and a fit asked again with the same
inputs is read from there instead of trained: training is deterministic, so that is the model it
would train. A backtest's successive cycles fit the same gate weeks before its first cutoff again
and again; only the first trains them, and a trainer running beside it waits for the fit it is
training (a lock per fit) rather than train it twice. The rolling fits run up to `--threads` at a
time (at most 4), the threads shared out among them: LightGBM gains little from a second thread on
rows of this size, and the models do not depend on the threads.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .blend import binary_params, binary_rounds, blend_scale, merge
from .common import WEEK_MS, TrainError, log
from .data import RankData
from .distributed import DaskTrainer
from .output import write_atomic
from .search import Trained

# Rolling fits trained at once at most: each holds its own copy of its weeks' rows.
MAX_CONCURRENT_FITS = 4


def train_on(parts: Sequence[RankData], trained: Trained, dask: DaskTrainer | None = None) -> Any:
    """A booster with `trained`'s params and number of trees, on the queries of `parts` together
    (on the Dask cluster with `dask`); with `trained.blend`, one model of it and a binary booster
    trained alike (blend.py)."""
    import lightgbm as lgb

    x = np.concatenate([d.x for d in parts])
    y = np.concatenate([d.y for d in parts])
    sizes = np.concatenate([np.diff(d.bounds) for d in parts])
    rounds = trained.best_iteration
    if dask is not None:
        rank = dask.train(trained.params, x, y, sizes, rounds)
    else:
        data = lgb.Dataset(x, y, group=sizes, params={"feature_pre_filter": False, "verbose": -1})
        rank = lgb.train(trained.params, data, num_boost_round=rounds)
    if trained.blend <= 0:
        return rank
    bought = (y > 0).astype(np.int32)
    params = binary_params(trained.params)
    if dask is not None:
        binary = dask.train_binary(params, x, bought, sizes, binary_rounds(rounds))
    else:
        data = lgb.Dataset(x, bought, params={"feature_pre_filter": False, "verbose": -1})
        binary = lgb.train(params, data, num_boost_round=binary_rounds(rounds))
    bounds = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return merge(rank, binary, blend_scale(rank, binary, x, bounds, trained.blend))


def in_window(parts: Sequence[RankData], start: float, end: float) -> list[RankData]:
    """The queries of `parts` whose cutoff is in [start, end), sets left empty dropped."""
    out = []
    for d in parts:
        qc = d.query_cutoffs("fit window")
        keep = (qc >= start) & (qc < end)
        if keep.all():
            out.append(d)
        elif keep.any():
            out.append(d.subset_queries(keep))
    return out


def refit(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained,
          dask: DaskTrainer | None, thin: Callable[[RankData], RankData],
          fit_weeks: int = 0, history: Sequence[RankData] = ()) -> Trained:
    """Retrain with the chosen params and rounds on the `history`, training, validation and `extra`
    weeks (with `fit_weeks`, those of the `fit_weeks` weeks before the last one's end), as each
    rolling fit learns from the weeks before its own.

    The latest weeks are, for fashion, the most informative: the shipped model must know them. The
    searched model's `valid_map` is kept (measured before, on the held-out validation week).
    Queries without a positive carry no LambdaRank gradient and are left out, as in training;
    `va`, `extra` and `history` go through `thin` as `tr` did (cli.py `--negatives`).
    """
    parts = _fit_pool(tr, va, extra, thin, history)
    if fit_weeks > 0:
        # The end from every row read, a last week without a purchase among its candidates too.
        end = max(int(d.query_cutoffs("refit").max()) for d in (tr, va, *extra) if d.queries)
        parts = in_window(parts, end + WEEK_MS - fit_weeks * WEEK_MS, end + WEEK_MS)
    booster = train_on(parts, trained, dask)
    log(f"refit on {' + '.join(str(d.queries) for d in parts)} queries, "
        f"{trained.best_iteration} rounds" +
        (f", a binary model blended in at {trained.blend:g}" if trained.blend > 0 else ""))
    return Trained(booster, trained.params, trained.best_iteration, trained.valid_map, trained.trials,
                   refit=True, trial=trained.trial, started=trained.started, seconds=trained.seconds,
                   blend=trained.blend)


def _fit_pool(tr: RankData, va: RankData, extra: Sequence[RankData],
              thin: Callable[[RankData], RankData], history: Sequence[RankData]) -> list[RankData]:
    """What the refit and the rolling fits learn from, oldest first: `history`, `tr` (kept to
    queries with a purchase, then thinned, by the caller), then `va` and `extra`, the same way (so
    a week's rows are thinned alike whichever of them holds it: data.py `thin_negatives`)."""
    return [thin(_with_positive(d)) for d in history] + [tr] + [
        thin(_with_positive(d)) for d in (va, *extra)]


def _with_positive(d: RankData) -> RankData:
    return d.subset_queries(d.positives_per_query() > 0)


@functools.cache
def trainer_digest() -> str:
    """LightGBM's version and the trainer's own code (its modules, tests left out): a kept fit is
    what training gives only while both are the same, and a `--work-dir` kept from before a change
    to either must not hand back the old code's fits."""
    import lightgbm as lgb

    h = hashlib.sha256(lgb.__version__.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        if not f.name.startswith("test_"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def fit_key(parts: Sequence[RankData], trained: Trained) -> str:
    """A hash of everything `train_on(parts, trained)` learns from and with: the trainer's code and
    LightGBM's version, the params, trees and blend, the features' names and the rows' values,
    labels and query sizes of the parts concatenated (as train_on concatenates them: how the rows
    are split into parts does not matter)."""
    if any(d.features != parts[0].features for d in parts):
        raise TrainError("rolling fit: parts with different features")
    # num_threads left out: the model does not depend on it (search.py), and trainers of one
    # thread and of two share their fits
    params = {k: v for k, v in trained.params.items() if k != "num_threads"}
    head = [trainer_digest(), params, trained.best_iteration, trained.blend,
            parts[0].features, str(parts[0].x.dtype), str(parts[0].y.dtype)]
    hashes = [hashlib.sha256(json.dumps(head, sort_keys=True).encode())] + [
        hashlib.sha256() for _ in range(3)]
    for d in parts:
        for h, a in zip(hashes[1:], (d.x, d.y, np.diff(d.bounds).astype(np.int64))):
            h.update(np.ascontiguousarray(a).tobytes())
    return hashlib.sha256("".join(h.hexdigest() for h in hashes).encode()).hexdigest()


def cached_fit(parts: Sequence[RankData], trained: Trained, dask: DaskTrainer | None,
               cache: Path | None, *, wait: bool = True,
               key: str | None = None) -> tuple[Any, bool] | None:
    """`train_on(parts, trained, dask)`, read from `cache` when a fit of the same inputs was
    kept there (then True), else trained and kept. The model goes through its text either way,
    so a kept one and a trained one score alike. Not with `dask`: only local training is
    deterministic, so only its fits are what training would give again.

    Trainers side by side (a backtest's cycles) may ask for the same fit at once: the first takes
    the fit's lock and trains it, and the others wait for it and read its model; with
    `wait=False` they get None instead, to fit another week meanwhile. The lock goes with its
    holder's process, so a trainer that dies leaves the fit to the next. `key`: the fit's
    `fit_key`, when known."""
    import lightgbm as lgb

    if cache is None or dask is not None:
        return train_on(parts, trained, dask), False
    key = key or fit_key(parts, trained)
    path = cache / f"{key}.lgb.txt"
    if path.exists():
        return lgb.Booster(model_file=str(path)), True
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{key}.lock", "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        try:
            if path.exists():
                return lgb.Booster(model_file=str(path)), True
            text = train_on(parts, trained, dask).model_to_string()
            write_atomic(path, text.encode())
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return lgb.Booster(model_str=text), False


def rolling_scores(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained,
                   weeks: Sequence[int], dask: DaskTrainer | None,
                   thin: Callable[[RankData], RankData], fit_weeks: int = 0,
                   history: Sequence[RankData] = (), cache: Path | None = None,
                   threads: int = 1) -> np.ndarray:
    """Scores of the `extra` rows of each week in `weeks` by what the recipe would have shipped then.

    For a week starting at cutoff g: the chosen params and number of trees trained on every row
    before g (with `fit_weeks`, of the `fit_weeks` weeks before g, as the refit learns from the
    weeks before its end: `history`, training, validation and earlier `extra` weeks), scoring the
    rows of g. One float per `extra` row, in file order (files concatenated); NaN for rows of weeks
    not listed. A gate judges these: fresh models on weeks they never saw, as the shipped model
    will be. They train on `va`, `extra` and `history` through `thin`, as the refit does, and score
    every row. With `threads` > 1, up to that many fits (at most `MAX_CONCURRENT_FITS`) train at
    once in threads of this process, LightGBM's threads shared out among them (LightGBM releases
    the GIL while it trains); the scores are the same.
    """
    out = [np.full(d.rows, np.nan, dtype=np.float32) for d in extra]
    pool = _fit_pool(tr, va, extra, thin, history)
    windows = {}
    for g in sorted(set(int(w) for w in weeks)):
        start = g - fit_weeks * WEEK_MS if fit_weeks > 0 else -np.inf
        windows[g] = in_window(pool, start, g)
        if not windows[g]:
            raise TrainError(f"no training rows before the rolling week {g}")
    keeps = cache is not None and dask is None  # cached_fit keeps fits
    keys = {g: fit_key(parts, trained) if keeps else "" for g, parts in windows.items()}
    at_once = 1 if dask is not None else max(1, min(threads, len(windows), MAX_CONCURRENT_FITS))
    if at_once > 1:
        # each fit's own LightGBM threads; not in fit_key, the model does not depend on them
        trained = dataclasses.replace(
            trained, params={**trained.params, "num_threads": max(1, threads // at_once)})
        log(f"rolling fits: {at_once} at a time, {trained.params['num_threads']} thread(s) each")

    def score(g: int, wait: bool) -> bool:
        return _score_week(g, windows[g], extra, trained, dask, cache, keys[g], out, wait=wait)

    # A week whose fit another trainer is training now is left for later; when every week left
    # is, wait for the first of them.
    pending = list(windows)
    with ThreadPoolExecutor(at_once) as fits:
        while pending:
            done = list(fits.map(lambda g: score(g, False), pending))
            left = [g for g, ok in zip(pending, done) if not ok]
            if left and left == pending:
                score(left.pop(0), wait=True)
            pending = left
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _score_week(g: int, parts: Sequence[RankData], extra: Sequence[RankData], trained: Trained,
                dask: DaskTrainer | None, cache: Path | None, key: str, out: list[np.ndarray], *,
                wait: bool) -> bool:
    """Week g's rows of `extra` scored into `out` by the fit on `parts`; False (nothing done)
    when another trainer is training that fit and `wait` is False."""
    got = cached_fit(parts, trained, dask, cache, wait=wait, key=key)
    if got is None:
        return False
    booster, kept = got
    scored = 0
    for i, d in enumerate(extra):
        rows = np.repeat(d.query_cutoffs("rolling scores") == g, np.diff(d.bounds))
        if rows.any():
            out[i][rows] = booster.predict(d.x[rows]).astype(np.float32)
            scored += int(rows.sum())
    week = datetime.fromtimestamp(g / 1000, timezone.utc).date().isoformat()
    log(f"rolling week {week}: {'the fit kept from before' if kept else 'trained'} on "
        f"{sum(d.queries for d in parts)} queries, scored {scored} rows")
    return True

"""Train the LambdaRank ranker (LightGBM), tune it with Optuna, export it to ONNX.

    .venv/bin/python training/train.py --rows train.arrow --valid valid.arrow --out DIR \
        [--trials 10] [--seed 42] [--version NAME] [--num-boost-round 500] [--early-stopping 30] \
        [--min-rounds N] [--refit [--refit-with later.arrow ...]]

    .venv/bin/python training/train.py --check-parity DIR/model.onnx --meta DIR/model.json \
        --valid valid.arrow [--booster DIR/model.lgb.txt]

Input: Arrow IPC files (file format = Feather v2, or the stream format) written by the TypeScript
row builder: `qid` (int64, one query = one customer x cutoff; the rows of a query are
contiguous), `customer_id`, `article_id`, `cutoff` (int64 ms), `label` (> 0: bought in the week
after the cutoff), then one float32 column per feature. The schema metadata holds `features` (JSON
array of the feature columns, in model input order) and `cutoffs` (JSON array of ms). Missing
values are NaN (Arrow nulls are read as NaN too).

Training: LightGBM `objective=lambdarank`, `metric=map`, `eval_at=[12]`, one group per qid,
early stopping on the validation file (LightGBM's own map@12, which scores a query without a
positive as 1: a constant that does not move the best iteration). Training queries without any
positive carry no LambdaRank gradient and are dropped (metrics: train_queries = the queries
trained on, dropped_train_queries_without_positive); validation keeps every query. Optuna (TPESampler(seed), the first trial LightGBM-ish defaults) searches
num_leaves, learning_rate, min_data_in_leaf, feature_fraction, bagging_fraction, lambda_l2 and
max_depth, maximising `map_at_k` below on the validation file; the best trial's booster, cut at
its best iteration, is kept (training is deterministic: deterministic=True, force_col_wise,
num_threads=2, seed).

MAP@12 (`map_at_k`, `average_precision_at_k`), the definition of the TypeScript evaluation:
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

Export: onnxmltools `convert_lightgbm`, input `input` float [N, F]; the LambdaRank export is one
`TreeEnsembleRegressor` (ai.onnx.ml) + `Identity`, output `variable` float [N, 1] (the names are
read from the graph and written to model.json); opsets "" 8 and ai.onnx.ml 1, IR 4, which
onnxruntime-node 1.30 loads. The converter rounds thresholds to the nearest float32 and takes the
NaN direction from default_left; `align_splits` then sets every split, paired with the booster's
own node by walking both trees, so that ONNX takes LightGBM's branch for every float32 input
(`onnx_split`: the largest float32 <= the threshold; LightGBM's zero band, |x| <= 1e-35 read as
0; its 1e300 stand-in for an infinite threshold; NaN read as 0.0 where the feature had no NaN in
training, missing_type None). A model with missing_type Zero (zero_as_missing) is refused.

Parity: before anything is written, ONNX Runtime's scores are compared with `booster.predict` on
the validation rows, one all-NaN row, up to 2000 validation rows with random NaN masks, rows that
reach every split with its feature on the threshold's float32 floor and the float32 values either
side, and every feature at values in and around the zero band (`parity_check_rows`). A max
absolute difference above 1e-4 refuses that trial's model ("parity check failed: ... (rows above:
...)"); the best trial that passes is shipped, and when none passes, no model is written.
`--check-parity` runs the same check on an exported model.

Refit (`--refit`): after the search, the chosen params and number of trees are trained again on
the training, validation and `--refit-with` rows (the latest weeks, which the shipped model must
know); that model is the output, and `cutoffs.refit` in model.json lists the extra weeks.
Rolling scores (`--rolling g1,g2,...`, cutoffs of `--refit-with` weeks): for each, the chosen params
and trees trained on every row before it score that week's rows, what the recipe would have
shipped then on a week it never saw; written to --out/rolling_scores.f32 (little-endian float32,
one per `--refit-with` row in file order, NaN for rows of weeks not listed) for a gate to judge.

Output in --out: model.onnx, model.lgb.txt (the booster, best iteration only), model.json (read by
models/model-meta.ts; see `build_meta`), and one JSON summary line on stdout. Progress goes
to stderr, one line per Optuna trial.

MLflow: when MLFLOW_TRACKING_URI is set (a tracking server, or a local store such as
sqlite:///path), the training is logged as one run named after the version in the experiment
MLFLOW_EXPERIMENT_NAME (default fashion-recsys-ranker): every LightGBM param of the shipped model
and the run's settings, the final metrics, one child run per Optuna trial (its searched params,
map12, best_iteration, seconds; tags shipped / parity) and the same trials as step-indexed
metrics (trial_map12, trial_best_iteration), tags version and data_hash, and the three files.
model.json and the summary line carry `tracking` {uri (without credentials), experiment_id,
run_id}, null when nothing was tracked. A tracking failure only warns (naming the URI): the model
is still written, with tracking null. Unless set, MLFLOW_HTTP_REQUEST_MAX_RETRIES=2,
_BACKOFF_FACTOR=1 and _TIMEOUT=15 (MLflow's defaults retry for minutes).

Exit codes: 0 ok, 1 bad input / too little data, 2 bad arguments, 3 parity check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# LightGBM's OpenMP threads sleep instead of spinning while they wait: on a 2-core machine
# shared with other work, spinning made a 10-trial search 5-8x slower (81 s vs 10 s measured).
# Must be set before lightgbm (libgomp) is loaded; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

K = 12
PARITY_TOLERANCE = 1e-4
INPUT_NAME = "input"
FIXED_COLUMNS = ("qid", "customer_id", "article_id", "cutoff", "label")
EXIT_INPUT = 1
EXIT_PARITY = 3


class TrainError(Exception):
    """A failure the user can act on; main prints the message and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# MAP@12


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


def query_bounds(qid: np.ndarray) -> np.ndarray:
    """Start offsets of each run of equal qids, plus len(qid) at the end."""
    n = len(qid)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(qid[1:] != qid[:-1]) + 1
    return np.concatenate(([0], change, [n])).astype(np.int64)


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


# --------------------------------------------------------------------------------------------
# Input


@dataclass
class RankData:
    path: Path
    features: list[str]
    cutoffs: list[int]
    x: np.ndarray  # float32 [N, F]
    y: np.ndarray  # int32 [N]
    qid: np.ndarray  # int64 [N]
    items: np.ndarray  # int64 [N], article codes (equal code = same article within the file)
    bounds: np.ndarray  # int64 [Q + 1]
    row_cutoff: np.ndarray | None = None  # int64 [N], each row's cutoff (column `cutoff`)

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def queries(self) -> int:
        return len(self.bounds) - 1

    def positives_per_query(self) -> np.ndarray:
        if self.rows == 0:
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat((self.y > 0).astype(np.int64), self.bounds[:-1])

    def subset_queries(self, keep: np.ndarray) -> RankData:
        sizes = np.diff(self.bounds)
        mask = np.repeat(keep, sizes)
        kept = sizes[keep]
        return RankData(
            self.path,
            self.features,
            self.cutoffs,
            self.x[mask],
            self.y[mask],
            self.qid[mask],
            self.items[mask],
            np.concatenate(([0], np.cumsum(kept))).astype(np.int64),
            None if self.row_cutoff is None else self.row_cutoff[mask],
        )

    def query_cutoffs(self, what: str) -> np.ndarray:
        """The cutoff of each query (its first row's); TrainError without a `cutoff` column."""
        if self.row_cutoff is None:
            raise TrainError(f"{self.path}: no `cutoff` column, needed for {what}")
        return self.row_cutoff[self.bounds[:-1]]


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if not path.is_file():
        raise TrainError(f"missing file: {path} does not exist (or is not a file)")
    try:
        with pa.OSFile(str(path), "rb") as src:
            try:
                return ipc.open_file(src).read_all()
            except pa.ArrowInvalid:
                src.seek(0)
                return ipc.open_stream(src).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise TrainError(f"{path}: not an Arrow IPC file or stream: {err}") from err


def _meta_json(table: Any, key: str, path: Path) -> Any:
    meta = table.schema.metadata or {}
    raw = meta.get(key.encode())
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as err:
        raise TrainError(f"{path}: schema metadata '{key}' is not JSON: {err}") from err


def read_rows(path: Path, expect_features: Sequence[str] | None = None) -> RankData:
    """Read and check one rows file (see the module doc); features in model order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_table(path)
    names = table.column_names
    missing = [c for c in ("qid", "article_id", "label") if c not in names]
    if missing:
        raise TrainError(f"{path}: missing column(s) {', '.join(missing)} (columns: {names})")

    features = _meta_json(table, "features", path)
    if features is None:
        features = [
            c
            for c in names
            if c not in FIXED_COLUMNS
            and (pa.types.is_floating(table.schema.field(c).type)
                 or pa.types.is_integer(table.schema.field(c).type))
        ]
    if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
        raise TrainError(f"{path}: schema metadata 'features' must be a JSON array of names")
    if not features:
        raise TrainError(
            f"{path}: no feature columns (expected float32 columns after "
            f"{', '.join(FIXED_COLUMNS)}, listed in the schema metadata 'features')"
        )
    if len(set(features)) != len(features):
        raise TrainError(f"{path}: schema metadata 'features' lists a feature twice")
    absent = [f for f in features if f not in names]
    if absent:
        raise TrainError(f"{path}: feature column(s) listed in metadata but absent: {absent}")
    if expect_features is not None and list(features) != list(expect_features):
        raise TrainError(
            f"{path}: its features {features} differ from the model's / training file's "
            f"{list(expect_features)} (same names in the same order are needed)"
        )

    n = table.num_rows
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        col = table.column(f)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise TrainError(f"{path}: feature column {f} is {col.type}, not a number")
        x[:, j] = col.to_numpy().astype(np.float32, copy=False) if n else 0

    qcol = table.column("qid")
    if qcol.null_count:
        raise TrainError(f"{path}: column qid has {qcol.null_count} null(s)")
    qid = qcol.to_numpy().astype(np.int64, copy=False)

    lcol = table.column("label")
    if lcol.null_count:
        raise TrainError(f"{path}: column label has {lcol.null_count} null(s)")
    label = lcol.to_numpy().astype(np.float64, copy=False)
    if n and (not np.all(np.isfinite(label)) or label.min() < 0 or label.max() > 30):
        raise TrainError(f"{path}: label must be a number in 0..30 (1 = bought, 0 = not)")
    y = np.rint(label).astype(np.int32)

    acol = table.column("article_id")
    if pa.types.is_dictionary(acol.type):
        acol = acol.cast(acol.type.value_type)
    items = (
        pc.dictionary_encode(acol).combine_chunks().indices.to_numpy(zero_copy_only=False)
        if n
        else np.zeros(0)
    ).astype(np.int64)

    bounds = query_bounds(qid)
    if len(np.unique(qid[bounds[:-1]])) != len(bounds) - 1:
        raise TrainError(f"{path}: the rows of a qid are not contiguous (sort the rows by qid)")

    cutoffs = _meta_json(table, "cutoffs", path)
    if cutoffs is None and "cutoff" in names:
        values = pc.unique(table.column("cutoff")).to_pylist()
        cutoffs = sorted(int(c) for c in values if c is not None)
    if not isinstance(cutoffs, list):
        cutoffs = []
    row_cutoff = (
        table.column("cutoff").to_numpy().astype(np.int64, copy=False)
        if "cutoff" in names and table.column("cutoff").null_count == 0
        else None
    )
    return RankData(path, list(features), [int(c) for c in cutoffs], x, y, qid, items, bounds,
                    row_cutoff)


def data_hash(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Training


def base_params(seed: int) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "map",
        "eval_at": [K],
        "deterministic": True,
        "force_col_wise": True,  # no timing-based row/col choice: same data, same model
        "num_threads": 2,
        "seed": seed,
        "verbose": -1,
        # the Dataset is reused across trials that change min_data_in_leaf
        "feature_pre_filter": False,
        "bagging_freq": 1,
    }


# Small trees and a low learning rate: weekly training sets hold a few hundred queries with a
# purchase among the candidates, where larger trees overfit (measured in the backtest).
DEFAULT_TRIAL = {
    "num_leaves": 7,
    "learning_rate": 0.03,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_depth": 8,
}


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


@dataclass
class Trained:
    booster: Any  # lightgbm.Booster holding exactly best_iteration trees
    params: dict[str, Any]
    best_iteration: int
    valid_map: float
    trials: int
    refit: bool = False
    # The Optuna trial (number, start, seconds), for tracking; None when not from a trial.
    trial: int | None = None
    started: datetime | None = None
    seconds: float | None = None


def train(
    tr: RankData,
    va: RankData,
    *,
    trials: int,
    seed: int,
    num_boost_round: int,
    early_stopping: int,
    min_rounds: int = 0,
) -> list[Trained]:
    """Every trial's model, best validation MAP@12 first."""
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
    base = base_params(seed)
    candidates: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        started = time.perf_counter()
        params = {**base, **suggest(trial)}
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(early_stopping, verbose=False)],
        )
        best_it = int(booster.best_iteration or booster.current_iteration())
        if best_it < min_rounds:
            # Early stopping on a small validation week often stops after a handful of trees;
            # the floor keeps enough of them (same params, no stopping).
            best_it = min(min_rounds, num_boost_round)
            booster = lgb.train(params, dtrain, num_boost_round=best_it)
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

    def report(study: Any, trial: Any) -> None:
        shown = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in trial.params.items()
        }
        log(
            f"trial {trial.number + 1}/{trials}: map@12={trial.value:.5f} "
            f"best={study.best_value:.5f} iterations={trial.user_attrs.get('best_iteration')} "
            f"({trial.user_attrs.get('seconds')}s) {json.dumps(shown)}"
        )

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, trials // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(DEFAULT_TRIAL)
    study.optimize(objective, n_trials=trials, callbacks=[report])
    # Best first (ties: the earlier trial); the caller takes the first that passes parity.
    candidates.sort(key=lambda c: (-c["map"], c["trial"]))
    return [
        Trained(
            lgb.Booster(model_str=c["model"]), c["params"], c["best_iteration"], c["map"], trials,
            trial=c["trial"], started=c["started"], seconds=c["seconds"],
        )
        for c in candidates
    ]


# --------------------------------------------------------------------------------------------
# ONNX export and parity


def export_onnx(booster: Any, n_features: int, version: str) -> tuple[bytes, str, str]:
    """ONNX bytes and the graph's (input, output) names; every split as the booster takes it."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = convert_lightgbm(
        booster,
        name="lightgbm_lambdarank",
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise TrainError(
            f"unexpected ONNX export: inputs {[i.name for i in model.graph.input]}, "
            f"outputs {[o.name for o in model.graph.output]} (expected one of each)"
        )
    align_splits(model, booster)
    model.doc_string = f"LightGBM LambdaRank ranker {version}"
    entry = model.metadata_props.add()
    entry.key, entry.value = "version", version
    return model.SerializeToString(), model.graph.input[0].name, model.graph.output[0].name


# LightGBM's kZeroThreshold, declared `const double kZeroThreshold = 1e-35f` (a float widened to
# double). Its predictor reads a value with |x| <= this as 0.0 (c_api.cpp, RowPairFunctionFrom-
# DenseMatric keeps only |x| > kZeroThreshold or NaN), and its bins put split thresholds at
# +-kZeroThreshold around the zero bin.
ZERO_THRESHOLD = float(np.float32(1e-35))
# LightGBM stores an infinite threshold as +-1e300 (Common::AvoidInf).
AVOID_INF = 1e300


def _up32(v: float) -> float:
    """The next float32 above float32 v (inf above the largest)."""
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def _down32(v: float) -> float:
    """The next float32 below float32 v (-inf below the lowest)."""
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def floor32(t: float) -> float:
    """The largest float32 <= the double t (float32 max for t beyond it)."""
    with np.errstate(over="ignore"):
        f = np.float32(t)
    return _down32(float(f)) if float(f) > t else float(f)


def _lightgbm_value(x: float) -> float:
    """What LightGBM's predictor compares for a non-NaN input value (the zero band read as 0)."""
    return 0.0 if abs(x) <= ZERO_THRESHOLD else x


def onnx_split(threshold: float, missing_type: str, default_left: bool) -> tuple[float, bool]:
    """The float32 threshold t' and nodes_missing_value_tracks_true with which ONNX's test
    (`x <= t'`, or NaN with tracks_true) sends every float32 x, NaN included, to the branch
    LightGBM takes.

    LightGBM 4.7 (include/LightGBM/tree.h, NumericalDecision), after its predictor read a value
    with |x| <= kZeroThreshold as 0.0: missing_type NaN sends NaN to the default_left side;
    missing_type None turns NaN into 0.0 and compares it (default_left plays no part); missing_type
    Zero sends the zero band to the default side. Then left iff x <= threshold, a double. The
    converter (onnxmltools 1.16) stores round-to-nearest float32 thresholds, and sets tracks_true
    from default_left, also for missing_type None, where LightGBM ignores it.

    For float32 x, `x <= t` holds exactly when `x <= floor32(t)`; with the zero band and infinities:
      |t| >= 1e300: LightGBM's stand-in for an infinite threshold (Common::AvoidInf; a split of
        the numbers from NaN), which sends +-inf inputs with the numbers (measured: +inf goes left
        at 1e300, right at a finite threshold) -> +-inf;
      t >= kZeroThreshold or t < -kZeroThreshold: the band sits wholly on one side -> floor32(t);
      -kZeroThreshold <= t < 0: the band (read as 0) goes right -> left iff x < -kZeroThreshold;
      0 <= t < kZeroThreshold: the band goes left -> left iff x <= kZeroThreshold.
    NaN: missing_type NaN -> default_left; None -> where 0.0 goes, i.e. 0 <= t.
    Missing_type Zero (only with zero_as_missing=true, which the trainer never sets) cannot be
    one ONNX test (the band would need its own branch) and is refused.
    """
    if missing_type == "Zero":
        raise TrainError(
            "ONNX export: a split has missing_type Zero (zero_as_missing=true), which one ONNX "
            "TreeEnsemble test cannot express; train without zero_as_missing"
        )
    if missing_type not in ("None", "NaN"):
        raise TrainError(f"ONNX export: unknown LightGBM missing_type {missing_type!r}")
    if abs(threshold) >= AVOID_INF:
        t32 = math.copysign(math.inf, threshold)
    elif threshold >= ZERO_THRESHOLD or threshold < -ZERO_THRESHOLD:
        t32 = floor32(threshold)
    elif threshold < 0:
        t32 = _down32(-ZERO_THRESHOLD)
    else:
        t32 = ZERO_THRESHOLD
    nan_left = default_left if missing_type == "NaN" else 0.0 <= threshold
    return t32, bool(nan_left)


def align_splits(model: Any, booster: Any) -> int:
    """Give every split of the exported TreeEnsembleRegressor LightGBM's own branch for every
    float32 input (`onnx_split`): threshold and NaN direction. Returns the splits changed.

    Nodes are paired by walking each ONNX tree (true/false children) and the booster's dumped tree
    (left/right children) together from the root, not by node numbering (onnxmltools numbers a
    node's two children when it visits the node, not in preorder). Any disagreement of shape,
    split feature, comparison or threshold (the converter's must be the float32 of the booster's)
    means another converter layout: the export fails rather than guessing.
    """
    import onnx

    ensembles = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    if len(ensembles) != 1:
        raise TrainError(f"unexpected ONNX export: {len(ensembles)} TreeEnsembleRegressor nodes")
    node = ensembles[0]
    attrs = {a.name: a for a in node.attribute}
    n = len(attrs["nodes_nodeids"].ints)
    if "nodes_missing_value_tracks_true" not in attrs:
        node.attribute.append(
            onnx.helper.make_attribute("nodes_missing_value_tracks_true", [0] * n)
        )
        attrs["nodes_missing_value_tracks_true"] = node.attribute[-1]
    tree_ids = attrs["nodes_treeids"].ints
    node_ids = attrs["nodes_nodeids"].ints
    features = attrs["nodes_featureids"].ints
    true_ids = attrs["nodes_truenodeids"].ints
    false_ids = attrs["nodes_falsenodeids"].ints
    modes = [m.decode() if isinstance(m, bytes) else m for m in attrs["nodes_modes"].strings]
    values = attrs["nodes_values"].floats
    tracks = attrs["nodes_missing_value_tracks_true"].ints
    index = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree_ids, node_ids))}

    def mismatch(tree: int, why: str) -> TrainError:
        return TrainError(f"ONNX export: tree {tree} does not match the booster's ({why})")

    by_tree: dict[int, list[int]] = {}
    for k, t in enumerate(tree_ids):
        by_tree.setdefault(int(t), []).append(k)
    changed = visited = 0
    trees = booster.dump_model()["tree_info"]
    for tree, info in enumerate(trees):
        mine = by_tree.get(tree, [])
        children = {
            int(c) for k in mine if modes[k] != "LEAF" for c in (true_ids[k], false_ids[k])
        }
        roots = [k for k in mine if node_ids[k] not in children]
        if len(roots) != 1:
            raise mismatch(tree, f"{len(roots)} root nodes")
        stack = [(info["tree_structure"], roots[0])]
        while stack:
            split, k = stack.pop()
            visited += 1
            if "split_index" not in split:
                if modes[k] != "LEAF":
                    raise mismatch(tree, f"node {node_ids[k]} is {modes[k]}, the booster's a leaf")
                continue
            threshold = float(split["threshold"])
            with np.errstate(over="ignore"):
                same_threshold = np.float32(values[k]) == np.float32(threshold)
            if (
                split["decision_type"] != "<="
                or modes[k] != "BRANCH_LEQ"
                or features[k] != int(split["split_feature"])
                or not same_threshold
            ):
                raise mismatch(
                    tree,
                    f"node {node_ids[k]}: {modes[k]} f{features[k]} {values[k]!r} vs "
                    f"{split['decision_type']} f{split['split_feature']} {threshold!r}",
                )
            t32, nan_left = onnx_split(
                threshold, split["missing_type"], bool(split["default_left"])
            )
            if float(np.float32(values[k])) != t32 or bool(tracks[k]) != nan_left:
                changed += 1
            values[k] = t32
            tracks[k] = int(nan_left)
            left, right = index.get((tree, int(true_ids[k]))), index.get((tree, int(false_ids[k])))
            if left is None or right is None:
                raise mismatch(tree, f"node {node_ids[k]} has a missing child")
            stack.append((split["left_child"], left))
            stack.append((split["right_child"], right))
    if visited != n:
        raise mismatch(len(trees), f"{n} ONNX nodes, {visited} booster nodes")
    return changed


# Every parity check scores these rows besides the validation rows (see `parity_check_rows`).
PARITY_NAN_ROWS = 2000
ZERO_BAND_VALUES = (
    0.0, -0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, _up32(ZERO_THRESHOLD), _down32(-ZERO_THRESHOLD),
    ZERO_THRESHOLD / 2, -ZERO_THRESHOLD / 2, 1e-40, -1e-40,
)


def threshold_rows(booster: Any, base: np.ndarray) -> np.ndarray:
    """Rows that put each split's feature exactly on its threshold's float32 floor and on the
    float32 values either side (plus the zero band for splits at +-kZeroThreshold), one row per
    value and split; the split's ancestors' features are set so the row reaches the split, the
    other features come from `base` rows in turn (NaN when there are none).
    """
    width = base.shape[1]
    if len(base) == 0:
        base = np.full((1, width), np.nan, dtype=np.float32)

    @functools.lru_cache(maxsize=None)
    def inside(lo: float, hi: float) -> float:
        # A float32 LightGBM puts in (lo, hi]; NaN when there is none.
        for c in (floor32(hi), _up32(floor32(lo)), 0.0):
            if np.isfinite(c) and lo < _lightgbm_value(c) <= hi:
                return c
        return math.nan

    rows: list[np.ndarray] = []
    k = 0
    for info in booster.dump_model()["tree_info"]:
        stack: list[tuple[dict, dict[int, tuple[float, float]]]] = [(info["tree_structure"], {})]
        while stack:
            split, path = stack.pop()
            if "split_index" not in split:
                continue
            if split["decision_type"] != "<=":  # not exported (align_splits refuses it)
                stack += [(split["left_child"], path), (split["right_child"], path)]
                continue
            f, t = int(split["split_feature"]), float(split["threshold"])
            reach = base[k % len(base)].copy()
            k += 1
            for g, (lo, hi) in path.items():
                if g != f:
                    reach[g] = inside(lo, hi)
            fl = floor32(t)
            probes = {_down32(fl), fl, _up32(fl)}
            if abs(t) <= 2 * ZERO_THRESHOLD:
                probes.update(ZERO_BAND_VALUES)
            for v in probes:
                row = reach.copy()
                row[f] = v
                rows.append(row)
            lo, hi = path.get(f, (-math.inf, math.inf))
            stack.append((split["left_child"], {**path, f: (lo, min(hi, t))}))
            stack.append((split["right_child"], {**path, f: (max(lo, t), hi)}))
    return np.asarray(rows, dtype=np.float32).reshape(-1, width)


def parity_check_rows(booster: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """The rows the parity check scores, by kind (deterministic for the same model and rows):
    validation: the rows given; all_nan: one row of NaN; nan_masks: up to 2000 of the rows with a
    random share of their values (0-100 %, per row) set to NaN; split_thresholds:
    `threshold_rows`; zero_band: each feature in turn at 0, -0, +-kZeroThreshold and their
    neighbours, inside the band and subnormal, the others from the rows given.
    """
    rng = np.random.default_rng(20_240_611)
    width = x.shape[1]
    sample = x[rng.choice(len(x), size=min(len(x), PARITY_NAN_ROWS), replace=False)].copy()
    sample[rng.random(sample.shape) < rng.random((len(sample), 1))] = np.nan
    base = x if len(x) else np.full((1, width), np.nan, dtype=np.float32)
    band = base[rng.integers(len(base), size=width * len(ZERO_BAND_VALUES))].copy()
    for i, (j, v) in enumerate((j, v) for j in range(width) for v in ZERO_BAND_VALUES):
        band[i, j] = v
    return {
        "validation": x,
        "all_nan": np.full((1, width), np.nan, dtype=np.float32),
        "nan_masks": sample,
        "split_thresholds": threshold_rows(booster, x),
        "zero_band": band,
    }


@dataclass
class ParityResult:
    max_abs_diff: float
    rows: int
    row_sets: dict[str, int]  # rows scored per kind (see `parity_check_rows`)

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.row_sets.items())


def parity(
    onnx_bytes: bytes, input_name: str, output_name: str, booster: Any, x: np.ndarray
) -> ParityResult:
    """Max |onnx - lightgbm| over `parity_check_rows(booster, x)`; raises TrainError when above
    PARITY_TOLERANCE or when ONNX Runtime cannot run the model."""
    import onnxruntime as ort

    sets = parity_check_rows(booster, np.asarray(x, dtype=np.float32))
    rows = np.vstack(list(sets.values()))
    kinds = np.repeat(np.arange(len(sets)), [len(v) for v in sets.values()])
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        got = sess.run([output_name], {input_name: rows})[0]
    except Exception as err:  # noqa: BLE001 - any ORT failure means the file is unusable
        raise TrainError(
            f"parity check failed: ONNX Runtime cannot run the model: {err}", EXIT_PARITY
        ) from err
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    want = booster.predict(rows)
    if got.shape != want.shape:
        raise TrainError(
            f"parity check failed: ONNX gives {got.shape[0]} scores for {want.shape[0]} rows",
            EXIT_PARITY,
        )
    diff = np.abs(got - want)
    diff[~np.isfinite(diff)] = math.inf
    worst = float(np.max(diff))
    if not worst <= PARITY_TOLERANCE:
        over = [
            f"{int(np.sum(diff[kinds == i] > PARITY_TOLERANCE))} {name}"
            for i, name in enumerate(sets)
            if np.any(diff[kinds == i] > PARITY_TOLERANCE)
        ]
        raise TrainError(
            f"parity check failed: max |onnx - lightgbm| = {worst:.3g} > {PARITY_TOLERANCE:g} "
            f"over {len(rows)} rows (rows above: {', '.join(over)})",
            EXIT_PARITY,
        )
    return ParityResult(worst, len(rows), {name: len(v) for name, v in sets.items()})


# --------------------------------------------------------------------------------------------
# Output


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def build_meta(
    *,
    version: str,
    created: datetime,
    features: list[str],
    trained: Trained,
    onnx_bytes: bytes,
    input_name: str,
    output_name: str,
    tr: RankData,
    va: RankData,
    dropped: int,
    digest: str,
    parity_diff: float,
    parity_rows: int,
    num_boost_round: int,
    early_stopping: int,
    valid_map_random: float,
    parity_sets: dict[str, int] | None = None,
) -> dict[str, Any]:
    pos = va.positives_per_query()
    return {
        "version": version,
        "kind": "lightgbm",
        "objective": "lambdarank",
        "features": features,
        "trees": trained.booster.num_trees(),
        "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "onnx_input": input_name,
        "onnx_output": output_name,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "params": {
            **trained.params,
            "num_boost_round": num_boost_round,
            "early_stopping_rounds": early_stopping,
        },
        "cutoffs": {"train": tr.cutoffs, "valid": va.cutoffs},
        "data_hash": digest,
        "metrics": {
            "valid_map12": trained.valid_map,
            "valid_map12_random": valid_map_random,
            "valid_queries": va.queries,
            "valid_queries_with_positive": int((pos > 0).sum()),
            "valid_rows": va.rows,
            "train_queries": tr.queries,
            "train_rows": tr.rows,
            "dropped_train_queries_without_positive": dropped,
            "best_iteration": trained.best_iteration,
            "trials": trained.trials,
            "refit_with_valid": trained.refit,
        },
        "parity": {"max_abs_diff": parity_diff, "rows": parity_rows}
        | ({"row_sets": parity_sets} if parity_sets is not None else {}),
        "feature_importance": feature_importance(trained.booster, features),
    }


def feature_importance(booster: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    """Total gain and split count per feature, largest gain first (the report plots it)."""
    gain = booster.feature_importance(importance_type="gain")
    split = booster.feature_importance(importance_type="split")
    rows = [
        {"feature": f, "gain": round(float(g), 6), "splits": int(n)}
        for f, g, n in zip(features, gain, split)
    ]
    return sorted(rows, key=lambda r: (-r["gain"], r["feature"]))


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside, then rename: a reader never sees half a file (mode follows the umask)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# MLflow tracking (optional: only when MLFLOW_TRACKING_URI is set)

DEFAULT_EXPERIMENT = "fashion-recsys-ranker"
# MLflow's own defaults retry a failed request 7 times with exponential backoff and wait up to
# 120 s per request: an unreachable tracking server would hold training for minutes. Set only
# when not set (an explicit setting wins).
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def _public_uri(uri: str) -> str:
    """The tracking URI without user:password (model.json and logs must not carry secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _ms(t: datetime | float) -> int:
    return int((t.timestamp() if isinstance(t, datetime) else t) * 1000)


@dataclass
class MlflowRun:
    """A run being logged: the client and the ids model.json links to."""

    client: Any  # mlflow.MlflowClient
    uri: str  # without credentials
    experiment_id: str
    run_id: str

    def link(self) -> dict[str, str]:
        return {"uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}


def _warn_mlflow(uri: str, what: str, err: BaseException, after: str) -> None:
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else ""
    log(f"warning: MLflow tracking at {uri} failed ({what}): {type(err).__name__}: {first}. "
        f"{after}")


UNTRACKED = "The model is written without tracking (tracking: null in model.json)."


def start_mlflow_run(*, version: str, digest: str, started: datetime) -> MlflowRun | None:
    """Create this training's run in the experiment (MLFLOW_EXPERIMENT_NAME, default
    DEFAULT_EXPERIMENT) when MLFLOW_TRACKING_URI is set; None without it, and None with a warning
    naming the URI when mlflow is missing or the server cannot be reached."""
    raw = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not raw:
        return None
    uri = _public_uri(raw)
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # mlflow imports GitPython
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the summary line only
            from mlflow import MlflowClient
    except ImportError as err:
        log(f"warning: MLFLOW_TRACKING_URI is set ({uri}) but mlflow cannot be imported ({err}); "
            "install training/requirements.txt into .venv. Continuing without MLflow.")
        return None
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or DEFAULT_EXPERIMENT
    try:
        with contextlib.redirect_stdout(sys.stderr):
            client = MlflowClient(tracking_uri=raw)
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                try:
                    experiment_id = client.create_experiment(name)
                except Exception:  # noqa: BLE001 - another trainer may have just created it
                    again = client.get_experiment_by_name(name)
                    if again is None:
                        raise
                    experiment_id = again.experiment_id
            run = client.create_run(
                experiment_id,
                start_time=_ms(started),
                run_name=version,
                tags={"version": version, "data_hash": digest,
                      "mlflow.source.name": "training/train.py", "mlflow.source.type": "LOCAL"},
            )
    except Exception as err:  # noqa: BLE001 - tracking is optional: the model is still written
        _warn_mlflow(uri, f"creating a run in experiment {name!r}", err, UNTRACKED)
        return None
    log(f"MLflow: run {run.info.run_id} in experiment {name!r} ({experiment_id}) at {uri}")
    return MlflowRun(client, uri, experiment_id, run.info.run_id)


def _param_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)


def log_mlflow_search(
    run: MlflowRun,
    meta: dict[str, Any],
    *,
    settings: dict[str, Any],
    ranked: Sequence[Trained],
    chosen: int,
) -> bool:
    """Log the run's parameters (every LightGBM param of the shipped model plus the run's
    settings), final metrics, and one child run per Optuna trial (its searched params; map@12,
    best_iteration, seconds; tags: parity passed / failed / unchecked and whether it was
    shipped), plus the trials as step-indexed metrics of the parent (step = trial number) for a
    search-progress chart. `ranked[chosen]` is the shipped trial; the ones before it failed
    parity. False (warned, run marked FAILED) when the server fails."""
    from mlflow.entities import Metric, Param, RunTag

    now = _ms(time.time())
    params = {k: _param_value(v) for k, v in meta["params"].items()}
    params |= {k: _param_value(v) for k, v in settings.items()}
    metrics = {
        k: float(v) for k, v in meta["metrics"].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    metrics |= {"parity_max_abs_diff": float(meta["parity"]["max_abs_diff"]),
                "parity_rows": float(meta["parity"]["rows"])}
    by_trial = sorted(
        ((t.trial if t.trial is not None else i, i, t) for i, t in enumerate(ranked)),
        key=lambda e: e[0],
    )
    chosen_trial = ranked[chosen].trial
    if chosen_trial is not None:
        metrics["chosen_trial"] = float(chosen_trial)
    steps = [
        Metric(key, float(value), now, number)
        for number, _, t in by_trial
        for key, value in (("trial_map12", t.valid_map), ("trial_best_iteration", t.best_iteration))
    ]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            client = run.client
            client.log_batch(
                run.run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag("trials", str(len(ranked)))],
            )
            for i in range(0, len(steps), 1000):  # MLflow takes up to 1000 metrics per batch
                client.log_batch(run.run_id, metrics=steps[i : i + 1000])
            for number, rank, t in by_trial:
                start = _ms(t.started) if t.started is not None else now
                checked = "passed" if rank == chosen else "failed" if rank < chosen else "unchecked"
                child = client.create_run(
                    run.experiment_id,
                    start_time=start,
                    run_name=f"{meta['version']} trial {number}",
                    tags={"mlflow.parentRunId": run.run_id, "version": meta["version"],
                          "data_hash": meta["data_hash"], "trial": str(number),
                          "parity": checked, "shipped": str(rank == chosen).lower()},
                )
                values = {"map12": t.valid_map, "best_iteration": t.best_iteration}
                if t.seconds is not None:
                    values["seconds"] = t.seconds
                client.log_batch(
                    child.info.run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
                    params=[Param(k, _param_value(t.params[k])) for k in DEFAULT_TRIAL
                            if k in t.params],
                )
                end = start + int(t.seconds * 1000) if t.seconds is not None else now
                client.set_terminated(child.info.run_id, "FINISHED", end_time=end)
    except Exception as err:  # noqa: BLE001 - tracking is optional
        _warn_mlflow(run.uri, f"logging run {run.run_id}", err, UNTRACKED)
        _fail_mlflow_run(run)
        return False
    return True


def finish_mlflow_run(run: MlflowRun, out: Path) -> bool:
    """Upload model.onnx, model.json and model.lgb.txt to the run and mark it FINISHED; False
    (warned, run marked FAILED; model.json keeps the link) when the upload fails."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            for name in ("model.onnx", "model.json", "model.lgb.txt"):
                run.client.log_artifact(run.run_id, str(out / name))
            run.client.set_terminated(run.run_id, "FINISHED")
    except Exception as err:  # noqa: BLE001 - tracking is optional
        _warn_mlflow(run.uri, f"uploading the model files to run {run.run_id}", err,
                     "model.json links the run, which lacks the files and is marked FAILED.")
        _fail_mlflow_run(run)
        return False
    log(f"MLflow: run {run.run_id} finished (params, metrics, trials, model files)")
    return True


def _fail_mlflow_run(run: MlflowRun) -> None:
    try:
        with contextlib.redirect_stdout(sys.stderr):
            run.client.set_terminated(run.run_id, "FAILED")
    except Exception:  # noqa: BLE001, S110 - the server already failed once; warned
        pass


def train_on(parts: Sequence[RankData], trained: Trained) -> Any:
    """A booster with `trained`'s params and number of trees, on the queries of `parts` together."""
    import lightgbm as lgb

    data = lgb.Dataset(
        np.concatenate([d.x for d in parts]),
        np.concatenate([d.y for d in parts]),
        group=np.concatenate([np.diff(d.bounds) for d in parts]),
        params={"feature_pre_filter": False, "verbose": -1},
    )
    return lgb.train(trained.params, data, num_boost_round=trained.best_iteration)


def refit(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained) -> Trained:
    """Retrain with the chosen params and rounds on the training, validation and `extra` weeks.

    The latest weeks are, for fashion, the most informative: the shipped model must know them. The
    searched model's `valid_map` is kept (measured before, on the held-out validation week).
    Queries without a positive carry no LambdaRank gradient and are left out, as in training.
    """
    parts = [tr] + [d.subset_queries(d.positives_per_query() > 0) for d in (va, *extra)]
    booster = train_on(parts, trained)
    log(f"refit on {' + '.join(str(d.queries) for d in parts)} queries, "
        f"{trained.best_iteration} rounds")
    return Trained(booster, trained.params, trained.best_iteration, trained.valid_map, trained.trials,
                   refit=True, trial=trained.trial, started=trained.started, seconds=trained.seconds)


def export_checked(trained: Trained, n_features: int, version: str, x: np.ndarray) -> tuple[
        bytes, str, str, Any]:
    """ONNX bytes, input and output names and the parity check of a booster; TrainError if off."""
    onnx_bytes, input_name, output_name = export_onnx(trained.booster, n_features, version)
    check = parity(onnx_bytes, input_name, output_name, trained.booster, x)
    return onnx_bytes, input_name, output_name, check


def rolling_scores(tr: RankData, va: RankData, extra: Sequence[RankData], trained: Trained,
                   weeks: Sequence[int]) -> np.ndarray:
    """Scores of the `extra` rows of each week in `weeks` by what the recipe would have shipped then.

    For a week starting at cutoff g: the chosen params and number of trees trained on every row
    before g (training, validation and earlier `extra` weeks), scoring the rows of g. One float
    per `extra` row, in file order (files concatenated); NaN for rows of weeks not listed. A gate
    judges these: fresh models on weeks they never saw, as the shipped model will be.
    """
    out = [np.full(d.rows, np.nan, dtype=np.float32) for d in extra]
    pool = [tr, va, *extra]
    for g in sorted(set(int(w) for w in weeks)):
        parts = []
        for d in pool:
            qc = d.query_cutoffs("rolling scores")
            keep = (qc < g) & (d.positives_per_query() > 0)
            if keep.any():
                parts.append(d.subset_queries(keep))
        if not parts:
            raise TrainError(f"no training rows before the rolling week {g}")
        booster = train_on(parts, trained)
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


def random_map(va: RankData, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return map_at_k(rng.random(va.rows), va.y, va.bounds, va.items)[0]


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    created = utc_now()
    tr = read_rows(args.rows)
    va = read_rows(args.valid, tr.features)
    features = tr.features
    log(f"train {tr.rows} rows / {tr.queries} queries, valid {va.rows} rows / {va.queries} "
        f"queries, {len(features)} features")

    if va.queries == 0 or not (va.positives_per_query() > 0).any():
        raise TrainError(
            "too little data: the validation week has no purchases among the candidates "
            f"({args.valid}: {va.queries} queries, none with label 1)"
        )
    has_pos = tr.positives_per_query() > 0
    dropped = int((~has_pos).sum())
    if int(has_pos.sum()) < 2:
        raise TrainError(
            f"too little data: {int(has_pos.sum())} training queries with a purchase among the "
            f"candidates ({args.rows}: {tr.queries} queries); at least 2 are needed"
        )
    tr = tr.subset_queries(has_pos)
    log(f"dropped {dropped} training queries without a positive; {tr.queries} left")

    ranked = train(
        tr,
        va,
        trials=args.trials,
        seed=args.seed,
        num_boost_round=args.num_boost_round,
        early_stopping=args.early_stopping,
        min_rounds=args.min_rounds,
    )
    digest = data_hash([args.rows, args.valid])
    version = args.version or f"lgbm-{created.strftime('%Y%m%d%H%M%S')}-{digest[:8]}"
    # The best trial whose ONNX export passes the parity check: a model that fails it is never
    # shipped, but one failing trial does not throw the search away.
    extra = [read_rows(path, features) for path in args.refit_with]
    failures: list[str] = []
    for n, searched in enumerate(ranked):
        # The kept booster (cut at its best iteration) scores exactly as in its trial;
        # re-measured so the reported number is the shipped model's.
        searched.valid_map = map_at_k(searched.booster.predict(va.x), va.y, va.bounds, va.items)[0]
        trained = refit(tr, va, extra, searched) if args.refit else searched
        try:
            onnx_bytes, input_name, output_name, check = export_checked(
                trained, len(features), version, va.x)
        except TrainError as err:
            failures.append(str(err))
            log(f"candidate {n + 1}/{len(ranked)} refused: {err}")
            continue
        break
    else:
        raise TrainError(f"no trial's model passed the parity check: {failures[0]}", EXIT_PARITY)
    chosen = n
    diff, rows = check.max_abs_diff, check.rows
    log(f"parity ok: max |onnx - lightgbm| = {diff:.3g} over {rows} rows ({check.summary()})")
    if failures:
        log(f"kept the best of the {len(ranked) - len(failures)} trials that passed parity")

    meta = build_meta(
        version=version,
        created=created,
        features=features,
        trained=trained,
        onnx_bytes=onnx_bytes,
        input_name=input_name,
        output_name=output_name,
        tr=tr,
        va=va,
        dropped=dropped,
        digest=digest,
        parity_diff=diff,
        parity_rows=rows,
        parity_sets=check.row_sets,
        num_boost_round=args.num_boost_round,
        early_stopping=args.early_stopping,
        valid_map_random=random_map(va, args.seed),
    )
    if args.refit:
        meta["cutoffs"]["refit"] = sorted({c for d in extra for c in d.cutoffs})
    # Tracking: the run is created and logged before the files are written, so model.json can
    # link it (or say tracking: null when the server failed); the files are uploaded after.
    run = start_mlflow_run(version=version, digest=digest, started=created)
    settings = {
        "trials": args.trials, "seed": args.seed, "min_rounds": args.min_rounds,
        "refit": args.refit, "rows": str(args.rows), "valid": str(args.valid),
        "n_features": len(features), "features": features,
    }
    if run is not None and not log_mlflow_search(run, meta, settings=settings, ranked=ranked,
                                                 chosen=chosen):
        run = None
    meta["tracking"] = run.link() if run is not None else None
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model.onnx", onnx_bytes)
    write_atomic(out / "model.lgb.txt", trained.booster.model_to_string().encode())
    write_atomic(out / "model.json", (json.dumps(meta, indent=2) + "\n").encode())
    if args.rolling:
        scores = rolling_scores(tr, va, extra, searched, args.rolling)
        write_atomic(out / "rolling_scores.f32", scores.astype("<f4").tobytes())
    if run is not None:
        finish_mlflow_run(run, out)
    return {
        "out": str(out),
        "version": version,
        "valid_map12": round(trained.valid_map, 6),
        "valid_map12_random": round(meta["metrics"]["valid_map12_random"], 6),
        "trees": meta["trees"],
        "best_params": {k: trained.params[k] for k in DEFAULT_TRIAL},
        "onnx_bytes": len(onnx_bytes),
        "onnx_output": output_name,
        "parity_max_abs_diff": diff,
        "train_queries": tr.queries,
        "dropped_train_queries_without_positive": dropped,
        "valid_queries": va.queries,
        "seconds": round(time.perf_counter() - started, 3),
        "tracking": meta["tracking"],
    }


def run_check_parity(args: argparse.Namespace) -> dict[str, Any]:
    import lightgbm as lgb

    onnx_path: Path = args.check_parity
    meta_path: Path = args.meta or onnx_path.with_name("model.json")
    booster_path: Path = args.booster or onnx_path.with_name("model.lgb.txt")
    for p in (onnx_path, meta_path, booster_path, args.valid):
        if not p.is_file():
            raise TrainError(f"missing file: {p} does not exist (or is not a file)")
    try:
        meta = json.loads(meta_path.read_text())
        features = list(meta["features"])
        input_name, output_name = meta["onnx_input"], meta["onnx_output"]
    except (ValueError, KeyError, TypeError) as err:
        raise TrainError(f"{meta_path}: not a model.json with features / onnx_input / "
                         f"onnx_output: {err}") from err
    va = read_rows(args.valid, features)
    onnx_bytes = onnx_path.read_bytes()
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    sha_ok = meta.get("onnx_sha256") in (None, sha)
    if not sha_ok:
        log(f"warning: {onnx_path} does not match onnx_sha256 of {meta_path} (sha256 {sha}): "
            "the file was changed or truncated")
    try:
        booster = lgb.Booster(model_file=str(booster_path))
    except lgb.basic.LightGBMError as err:
        raise TrainError(f"{booster_path}: cannot load the LightGBM model: {err}") from err
    if booster.num_feature() != len(features):
        raise TrainError(f"{booster_path} takes {booster.num_feature()} features, "
                         f"{meta_path} lists {len(features)}")
    check = parity(onnx_bytes, input_name, output_name, booster, va.x)
    diff, rows = check.max_abs_diff, check.rows
    if not sha_ok:
        raise TrainError(
            f"checksum mismatch: {onnx_path} does not match onnx_sha256 of {meta_path} "
            f"(parity itself passed: max |onnx - lightgbm| = {diff:.3g})",
            EXIT_PARITY,
        )
    log(f"parity ok: max |onnx - lightgbm| = {diff:.3g} over {rows} rows ({check.summary()})")
    return {"check_parity": str(onnx_path), "ok": True, "max_abs_diff": diff, "rows": rows,
            "onnx_sha256_ok": sha_ok}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the LightGBM LambdaRank ranker, tune with Optuna, export to ONNX.",
    )
    p.add_argument("--rows", type=Path, help="training rows (Arrow IPC)")
    p.add_argument("--valid", type=Path, help="validation rows (Arrow IPC)")
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument("--trials", type=int, default=10, help="Optuna trials (default 10)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--version", default=None,
                   help="model version (default lgbm-<UTC yyyymmddHHMMSS>-<data hash 8>)")
    p.add_argument("--num-boost-round", type=int, default=500)
    p.add_argument("--early-stopping", type=int, default=30)
    p.add_argument("--min-rounds", type=int, default=0,
                   help="keep at least this many trees when early stopping stops sooner")
    p.add_argument("--refit", action="store_true",
                   help="after the search, retrain on training + validation (+ --refit-with) rows; "
                        "the searched model goes to OUT/search")
    p.add_argument("--refit-with", type=Path, action="append", default=[], metavar="ROWS",
                   help="more rows (later weeks) the refit also trains on; repeatable")
    p.add_argument("--rolling", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                   metavar="MS,MS", help="cutoffs (ms) of --refit-with weeks to score with a model "
                   "trained on every row before each; float32 scores in OUT/rolling_scores.f32")
    p.add_argument("--check-parity", type=Path, metavar="MODEL_ONNX",
                   help="re-run the parity check of an exported model instead of training")
    p.add_argument("--meta", type=Path, help="model.json for --check-parity (default: beside it)")
    p.add_argument("--booster", type=Path,
                   help="LightGBM model for --check-parity (default: model.lgb.txt beside it)")
    args = p.parse_args(argv)
    if args.check_parity is not None:
        if args.valid is None:
            p.error("--check-parity needs --valid")
    else:
        missing = [f"--{n}" for n in ("rows", "valid", "out") if getattr(args, n) is None]
        if missing:
            p.error(f"missing {', '.join(missing)}")
        if args.trials < 1 or args.num_boost_round < 1 or args.early_stopping < 1:
            p.error("--trials, --num-boost-round and --early-stopping must be >= 1")
        if args.refit_with and not args.refit:
            p.error("--refit-with needs --refit")
        if args.rolling and not args.refit_with:
            p.error("--rolling needs --refit-with (the rows it scores)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        summary = run_check_parity(args) if args.check_parity is not None else run_train(args)
    except TrainError as err:
        print(f"train: error: {err}", file=sys.stderr, flush=True)
        return err.code
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

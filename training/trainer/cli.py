"""The trainer's command line (see the package doc for the flags): `run_train` reads the rows,
searches, ships the best trial whose ONNX export passes the parity check (refitted with
`--refit`), tracks the run and writes the model files; `run_check_parity` re-checks an exported
model. `main` prints one JSON summary line on stdout, or the error on stderr with its exit code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import EXIT_PARITY, TrainError, log
from .data import RankData, data_hash, read_rows
from .distributed import DaskTrainer
from .metrics import map_at_k, random_map
from .output import build_meta, utc_now, write_atomic
from .parity import ParityResult, export_checked, parity
from .refit import refit, rolling_scores
from .search import DEFAULT_TRIAL, Trained, search, unsearched
from .tracking import MlflowRun, finish_mlflow_run, log_mlflow_search, start_mlflow_run


@dataclass
class Shipped:
    """The model that passed the parity check: `ranked[chosen]` as searched, and as shipped
    (refitted with --refit, else the same), with its ONNX export and parity check."""

    chosen: int
    searched: Trained
    trained: Trained
    onnx_bytes: bytes
    input_name: str
    output_name: str
    check: ParityResult


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    if args.dask is None:
        return train_with(args, None)
    dask = DaskTrainer(args.dask, args.dask_partitions)
    try:
        return train_with(args, dask)
    finally:
        dask.close()


def train_with(args: argparse.Namespace, dask: DaskTrainer | None) -> dict[str, Any]:
    started = time.perf_counter()
    created = utc_now()
    tr, va, dropped = read_training_rows(args)
    all_features = tr.features
    large = large_data(args, tr)
    left_out = [] if large else [f for f in args.sized_features if f in tr.features]
    if left_out:
        log(f"left out {len(left_out)} feature(s) ({', '.join(left_out)})")
    tr, va = tr.without(left_out), va.without(left_out)
    # 1 (an int) when every row is kept: model.json and MLflow then both read "1"
    share = args.negatives if large and args.negatives < 1 else 1

    def thin(d: RankData) -> RankData:
        return d.thin_negatives(share, args.seed)

    if share < 1:
        rows, tr = tr.rows, thin(tr)
        log(f"kept {tr.rows} of {rows} training rows: every purchase and {share:g} of the other "
            f"candidates ({tr.queries} queries)")
    # 0 (an int) when nothing is blended: model.json and MLflow then both read "0"
    blend = float(args.blend) if large and args.blend > 0 else 0
    trees = args.large_trees if large else None
    features = tr.features
    ranked = [unsearched(seed=args.seed, rounds=args.num_boost_round, trees=trees,
                         threads=args.threads)] if (
        args.no_search
    ) else (
        search(
            tr,
            va,
            trials=args.trials,
            seed=args.seed,
            num_boost_round=args.num_boost_round,
            early_stopping=args.early_stopping,
            min_rounds=args.min_rounds,
            trees=trees,
            dask=dask,
            threads=args.threads,
        )
    )
    for t in ranked:
        t.blend = blend
    digest = data_hash([args.rows, args.valid])
    version = args.version or f"lgbm-{created.strftime('%Y%m%d%H%M%S')}-{digest[:8]}"
    extra = [read_rows(path, all_features).without(left_out) for path in args.refit_with]
    history = [read_rows(path, all_features).without(left_out) for path in args.history]
    shipped = first_passing_parity(ranked, tr, va, extra, with_refit=args.refit, version=version,
                                   dask=dask, thin=thin, fit_weeks=args.fit_weeks, history=history)
    trained, check = shipped.trained, shipped.check
    meta = build_meta(
        version=version,
        created=created,
        features=features,
        trained=trained,
        onnx_bytes=shipped.onnx_bytes,
        input_name=shipped.input_name,
        output_name=shipped.output_name,
        tr=tr,
        va=va,
        dropped=dropped,
        digest=digest,
        parity_diff=check.max_abs_diff,
        parity_rows=check.rows,
        parity_sets=check.row_sets,
        num_boost_round=args.num_boost_round,
        early_stopping=args.early_stopping,
        valid_map_random=random_map(va, args.seed),
        negative_share=share,
        blend=blend,
    )
    # the sized features left out below --large-from, so model.json says why they are missing
    meta["params"]["left_out_features"] = left_out
    if args.refit:
        meta["cutoffs"]["refit"] = sorted({c for d in extra for c in d.cutoffs})
    # Tracking: the run is created and logged before the files are written, so model.json can
    # link it (or say tracking: null when the server failed); the files are uploaded after.
    # not searched: no trial to log
    run = track_search(args, meta, [] if args.no_search else ranked, shipped.chosen,
                       created=created)
    meta["tracking"] = run.link() if run is not None else None
    out: Path = args.out
    write_model_files(out, shipped, meta)
    if args.rolling:
        scores = rolling_scores(tr, va, extra, shipped.searched, args.rolling, dask, thin,
                                args.fit_weeks, history, cache=args.fit_cache,
                                threads=args.threads)
        write_atomic(out / "rolling_scores.f32", scores.astype("<f4").tobytes())
    if run is not None:
        finish_mlflow_run(run, out)
    return {
        "out": str(out),
        "version": version,
        "valid_map12": None if trained.valid_map is None else round(trained.valid_map, 6),
        "valid_map12_random": round(meta["metrics"]["valid_map12_random"], 6),
        "trees": meta["trees"],
        "best_params": {k: trained.params[k] for k in DEFAULT_TRIAL},
        "onnx_bytes": len(shipped.onnx_bytes),
        "onnx_output": shipped.output_name,
        "parity_max_abs_diff": check.max_abs_diff,
        "train_queries": tr.queries,
        "dropped_train_queries_without_positive": dropped,
        "valid_queries": va.queries,
        "seconds": round(time.perf_counter() - started, 3),
        "tracking": meta["tracking"],
        "dask": None if dask is None else {"workers": dask.workers, "partitions": dask.partitions},
    }


def read_training_rows(args: argparse.Namespace) -> tuple[RankData, RankData, int]:
    """The training rows (queries without a positive dropped), the validation rows and the
    number dropped; TrainError when too little is left to train or validate on."""
    tr = read_rows(args.rows)
    va = read_rows(args.valid, tr.features)
    log(f"train {tr.rows} rows / {tr.queries} queries, valid {va.rows} rows / {va.queries} "
        f"queries, {len(tr.features)} features")

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
    return tr, va, dropped


def large_data(args: argparse.Namespace, tr: RankData) -> bool:
    """Whether the training set is large: at least `--large-from` queries with a purchase (`tr`:
    those queries). Only then does every fit (search, refit, rolling fits) use the sized features,
    thin the negatives (`--negatives`), blend (`--blend`) and grow `--large-trees`; below, the
    model leaves the sized features out (a model's feature list is what serving computes, so a
    column left out here is not read there either), trains on every row, ships LambdaRank alone
    with the default small trees."""
    large = tr.queries >= args.large_from
    # what the large settings asked for change: (on large data, below)
    changes = [
        (f"{args.negatives:g} of the negatives", "every row") if args.negatives < 1 else None,
        (f"a binary blend at {args.blend:g}", "LambdaRank alone") if args.blend > 0 else None,
        (f"the sized features ({len(args.sized_features)})", "no sized features")
        if args.sized_features else None,
        (f"trees of {args.large_trees[0]} leaves, >= {args.large_trees[1]} rows each",
         "the small trees") if args.large_trees is not None else None,
    ]
    said = [c[0 if large else 1] for c in changes if c is not None]
    if said:
        log(f"{'large' if large else 'small'} data ({tr.queries} training queries with a purchase, "
            f"large from {args.large_from}): {', '.join(said)}")
    return large


def first_passing_parity(
    ranked: list[Trained],
    tr: RankData,
    va: RankData,
    extra: list[RankData],
    *,
    with_refit: bool,
    version: str,
    dask: DaskTrainer | None,
    thin: Callable[[RankData], RankData],
    fit_weeks: int = 0,
    history: Sequence[RankData] = (),
) -> Shipped:
    """The best trial whose ONNX export passes the parity check: a model that fails it is never
    shipped, but one failing trial does not throw the search away. With `with_refit`, each trial
    is refitted (refit.py, its weeks through `thin`) before its export."""
    features = tr.features
    failures: list[str] = []
    for n, searched in enumerate(ranked):
        # The kept booster (cut at its best iteration) scores exactly as in its trial;
        # re-measured so the reported number is the shipped model's (none when not searched).
        if searched.booster is not None:
            searched.valid_map = map_at_k(searched.booster.predict(va.x), va.y, va.bounds,
                                          va.items)[0]
        trained = (refit(tr, va, extra, searched, dask, thin, fit_weeks, history) if with_refit
                   else searched)
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
    diff, rows = check.max_abs_diff, check.rows
    log(f"parity ok: max |onnx - lightgbm| = {diff:.3g} over {rows} rows ({check.summary()})")
    if failures:
        log(f"kept the best of the {len(ranked) - len(failures)} trials that passed parity")
    return Shipped(n, searched, trained, onnx_bytes, input_name, output_name, check)


def track_search(
    args: argparse.Namespace,
    meta: dict[str, Any],
    ranked: list[Trained],
    chosen: int,
    *,
    created: datetime,
) -> MlflowRun | None:
    """The MLflow run with the search logged (tracking.py); None when not tracked or failed."""
    run = start_mlflow_run(version=meta["version"], digest=meta["data_hash"], started=created)
    features = meta["features"]
    settings = {
        "trials": args.trials, "seed": args.seed, "min_rounds": args.min_rounds,
        "refit": args.refit, "no_search": args.no_search, "rows": str(args.rows),
        "valid": str(args.valid),
        "n_features": len(features), "features": features,
    }
    if run is not None and not log_mlflow_search(run, meta, settings=settings, ranked=ranked,
                                                 chosen=chosen):
        run = None
    return run


def write_model_files(out: Path, shipped: Shipped, meta: dict[str, Any]) -> None:
    """model.onnx, model.lgb.txt and model.json in `out` (created when missing)."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model.onnx", shipped.onnx_bytes)
    write_atomic(out / "model.lgb.txt", shipped.trained.booster.model_to_string().encode())
    write_atomic(out / "model.json", (json.dumps(meta, indent=2) + "\n").encode())


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
    # the model's features by name: a model may leave out columns of the rows (large_data)
    va = read_rows(args.valid).only(features)
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


def _trees(value: str) -> tuple[int, int]:
    """`--large-trees LEAVES,ROWS`: two integers, at least 2 leaves and 1 row per leaf."""
    parts = value.split(",")
    try:
        leaves, rows = (int(v) for v in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        leaves, rows = 0, 0
    if leaves < 2 or rows < 1:
        raise argparse.ArgumentTypeError(
            f"expected LEAVES,ROWS (at least 2 leaves, 1 row per leaf), got {value!r}")
    return leaves, rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.trainer",
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
    p.add_argument("--large-from", type=int, default=0, metavar="N",
                   help="the training queries with a purchase from which the data is large: "
                        "--negatives, --sized-features, --blend and --large-trees apply only "
                        "from there (default 0: always)")
    p.add_argument("--negatives", type=float, default=1.0, metavar="SHARE",
                   help="on large data, train on every purchase and this share of the other "
                        "candidates (each kept with this probability, seeded; default 1, all). The "
                        "validation week and the scored rows keep every row")
    p.add_argument("--sized-features", type=lambda v: [f for f in v.split(",") if f], default=[],
                   metavar="F,F", help="features the model uses only on large data; below, it "
                   "leaves them out (and serving, which computes the model's features, does not "
                   "compute them)")
    p.add_argument("--blend", type=float, default=0.0, metavar="W",
                   help="on large data, blend a binary model, weighed W, into the refit and the "
                        "rolling fits: one model of both tree lists (blend.py; default 0, none; "
                        "needs --refit)")
    p.add_argument("--large-trees", type=_trees, default=None, metavar="LEAVES,ROWS",
                   help="on large data, the first trial's trees: leaves and least rows per leaf "
                        "(default: the small trees of search.py DEFAULT_TRIAL)")
    p.add_argument("--no-search", action="store_true",
                   help="with one trial and a refit: train no search model, the first trial's "
                        "parameters and --num-boost-round trees go straight to the refit (the "
                        "validation week then only checks the export's parity; model.json's "
                        "valid_map12 is null)")
    p.add_argument("--refit", action="store_true",
                   help="after the search, retrain on training + validation (+ --refit-with) rows; "
                        "the retrained model ships")
    p.add_argument("--refit-with", type=Path, action="append", default=[], metavar="ROWS",
                   help="more rows (later weeks) the refit also trains on; repeatable")
    p.add_argument("--rolling", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                   metavar="MS,MS", help="cutoffs (ms) of --refit-with weeks to score with a model "
                   "trained on every row before each; float32 scores in OUT/rolling_scores.f32")
    p.add_argument("--fit-weeks", type=int, default=0, metavar="N",
                   help="the refit learns from the N weeks before the last --refit-with week's "
                        "end, each --rolling fit from the N weeks before its week (default 0: "
                        "every row before)")
    p.add_argument("--fit-cache", type=Path, default=None, metavar="DIR",
                   help="keep each --rolling fit's model in DIR under a hash of its inputs and "
                        "read it from there when the same fit is asked again (a backtest's cycles "
                        "fit the same early gate weeks; refit.py)")
    p.add_argument("--history", type=Path, action="append", default=[], metavar="ROWS",
                   help="older rows (weeks before --rows) that the refit and the --rolling fits "
                        "learn from within --fit-weeks; repeatable")
    p.add_argument("--threads", type=int, default=2, metavar="N",
                   help="LightGBM's threads (default 2), shared out among the --rolling fits, "
                        "up to N (at most 4) of which train at once; the model is the same "
                        "whatever N, so a backtest runs several trainers of one thread side by side")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="train on this Dask scheduler (e.g. tcp://10.0.0.5:8786) with "
                        "lightgbm.dask, one LightGBM process per worker (distributed.py)")
    p.add_argument("--dask-partitions", type=int, default=None, metavar="N",
                   help="partitions per data set on the cluster (default: one per worker)")
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
        if not 0 < args.negatives <= 1:
            p.error("--negatives must be in (0, 1]")
        if args.large_from < 0:
            p.error("--large-from must be >= 0")
        if args.blend < 0:
            p.error("--blend must be >= 0")
        if args.blend > 0 and not args.refit:
            p.error("--blend needs --refit (the refit and the rolling fits are blended)")
        if args.no_search and (args.trials != 1 or not args.refit):
            p.error("--no-search needs --trials 1 and --refit (a search model is what ships "
                    "without a refit)")
        if args.refit_with and not args.refit:
            p.error("--refit-with needs --refit")
        if args.rolling and not args.refit_with:
            p.error("--rolling needs --refit-with (the rows it scores)")
        if args.fit_weeks < 0:
            p.error("--fit-weeks must be >= 0")
        if args.history and not args.refit:
            p.error("--history needs --refit (only the refit and the rolling fits read it)")
        if args.dask_partitions is not None and args.dask_partitions < 1:
            p.error("--dask-partitions must be >= 1")
        if args.threads < 1:
            p.error("--threads must be >= 1")
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

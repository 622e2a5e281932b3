"""What a training writes to --out: model.onnx, model.lgb.txt (the booster, best iteration only)
and model.json (read by models/model-meta.ts; see `build_meta`), each written whole or not at all
(`write_atomic`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .blend import SPEEDUP
from .data import RankData
from .search import Trained


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
    negative_share: float = 1.0,
    blend: float = 0.0,
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
            # the share of training candidates without a purchase trained on (cli.py --negatives)
            "negative_share": negative_share,
            # the weight of the binary model blended into the shipped model (blend.py; 0: none)
            "blend": blend,
            # with a blend, the binary booster grows 1 / this of the trees at this times the rate
            "blend_speedup": SPEEDUP,
        },
        "cutoffs": {"train": tr.cutoffs, "valid": va.cutoffs},
        "data_hash": digest,
        "metrics": {
            # the searched model's, on the early-stopping week; null when not searched
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

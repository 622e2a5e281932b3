"""Test-only helpers of the trainer's tests (test_*.py beside): rows files like the TypeScript
row builder's, with a planted signal, and the trainer run as a command, as training/fit.ts runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

# The repository root, where `python -m training.trainer` is run from.
ROOT = Path(__file__).resolve().parents[2]
TRAINER = [sys.executable, "-m", "training.trainer"]
# The trainer's environment in these tests: no tracking unless a test asks for it.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
N_FEATURES = 6
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
DAY = 86_400_000


def write_rows(
    path: Path,
    qid: np.ndarray,
    article: list[str],
    label: np.ndarray,
    x: np.ndarray,
    features: list[str] | None,
    cutoffs: list[int],
    *,
    stream: bool = False,
) -> Path:
    """An Arrow IPC file: qid, customer_id, article_id, cutoff, label, one float32 per feature."""
    names = features if features is not None else []
    cutoff = np.asarray([cutoffs[int(q) % len(cutoffs)] for q in qid], dtype=np.int64)
    cols = {
        "qid": pa.array(qid, pa.int64()),
        "customer_id": pa.array([f"c{int(q)}" for q in qid], pa.string()),
        "article_id": pa.array(article, pa.string()),
        "cutoff": pa.array(cutoff, pa.int64()),
        "label": pa.array(label.astype(np.int8), pa.int8()),
    }
    for j, name in enumerate(names):
        cols[name] = pa.array(x[:, j].astype(np.float32), pa.float32())
    meta = {"cutoffs": json.dumps(cutoffs)}
    if features is not None:
        meta["features"] = json.dumps(features)
    table = pa.table(cols).replace_schema_metadata(meta)
    with pa.OSFile(str(path), "wb") as sink:
        writer = ipc.new_stream(sink, table.schema) if stream else ipc.new_file(sink, table.schema)
        with writer:
            writer.write_table(table)
    return path


def planted(
    rng: np.random.Generator, queries: int, per_query: int, *, no_positive: int = 0, qid0: int = 0
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Queries whose buyers pick what scores high on f0 + 0.7 f1 (other features are noise).

    ~5 % NaN everywhere; the first `no_positive` queries have no purchase.
    """
    n = queries * per_query
    qid = np.repeat(np.arange(qid0, qid0 + queries), per_query)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    utility = np.nan_to_num(x[:, 0], nan=-2.0) + 0.7 * np.nan_to_num(x[:, 1], nan=-2.0)
    utility += rng.normal(scale=0.3, size=n)
    label = np.zeros(n, dtype=np.int8)
    for q in range(queries):
        if q < no_positive:
            continue
        s = q * per_query
        k = int(rng.integers(1, 4))
        top = np.argsort(-utility[s : s + per_query])[:k]
        label[s + top] = 1
    article = [f"a{int(v)}" for v in rng.integers(0, 5000, size=n)]
    return qid, article, label, x

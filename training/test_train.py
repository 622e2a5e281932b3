"""Tests of training/train.py: MAP@12 by hand, an end-to-end run on planted data, parity checks,
the ONNX export taking LightGBM's branch for every float32 input, MLflow tracking.

    .venv/bin/python -m pytest training -q
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402

TRAIN_PY = Path(__file__).resolve().parent / "train.py"
# The trainer's environment in these tests: no tracking unless a test asks for it.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
N_FEATURES = 6
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
DAY = 86_400_000


# ---------------------------------------------------------------------------------------------
# Rows files like the TypeScript row builder's


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


# ---------------------------------------------------------------------------------------------
# MAP@12 by hand


def test_ap_fewer_relevant_than_k() -> None:
    # hits at positions 2 and 4: (1/2 + 2/4) / min(2, 12)
    assert train.average_precision_at_k(["a", "b", "c", "d"], {"b", "d"}) == pytest.approx(0.5)
    # one relevant article at position 3 of a list of 3
    assert train.average_precision_at_k(["x", "y", "z"], {"z"}) == pytest.approx(1 / 3)


def test_ap_no_relevant_is_zero() -> None:
    assert train.average_precision_at_k(["a", "b"], set()) == 0.0
    assert train.average_precision_at_k([], {"a"}) == 0.0


def test_ap_all_relevant_at_top() -> None:
    assert train.average_precision_at_k(["a", "b", "c", "d"], {"a", "b", "c"}) == 1.0
    # 15 relevant, all on top: the denominator is min(15, 12)
    items = [f"r{i}" for i in range(15)]
    assert train.average_precision_at_k(items, set(items)) == 1.0


def test_ap_cut_at_12() -> None:
    ranked = [f"n{i}" for i in range(12)] + ["hit"]
    assert train.average_precision_at_k(ranked, {"hit"}) == 0.0
    ranked = [f"n{i}" for i in range(11)] + ["hit"]
    assert train.average_precision_at_k(ranked, {"hit"}) == pytest.approx(1 / 12)


def test_ap_duplicates_ignored() -> None:
    # Kaggle apk: the second "a" takes position 2 but is no hit: (1/1 + 2/3) / 2
    assert train.average_precision_at_k(["a", "a", "b"], {"a", "b"}) == pytest.approx(5 / 6)
    # a hit repeated never counts twice, even with one relevant article
    assert train.average_precision_at_k(["a", "a", "a"], {"a"}) == 1.0
    # repeats still take positions: the hit is at 4
    assert train.average_precision_at_k(["x", "x", "x", "a"], {"a"}) == pytest.approx(1 / 4)
    # a relevant article listed twice among the relevant counts once
    assert train.average_precision_at_k(["a", "c"], ["a", "a", "b"]) == pytest.approx(1 / 2)


def test_map_over_queries_counts_queries_without_positive_and_keeps_ties_stable() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.2, 0.3, 0.3, 0.0])
    labels = np.array([0, 1, 1, 0, 0, 0, 1, 1])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 7])
    bounds = np.array([0, 3, 5, 8])
    mean, ap = train.map_at_k(scores, labels, bounds, items)
    # q0: ranked 1, 3(hit), 2(hit) -> (1/2 + 2/3) / 2; q1: no positive -> 0
    # q2: tie 6 vs 7 keeps file order: 6, 7(hit), 7 again (no hit) -> 1/2 / min(1, 12)
    assert ap.tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2, 0.0, 1 / 2])
    assert mean == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0 + 1 / 2) / 3)
    # the same numbers through the list form
    assert train.average_precision_at_k([1, 3, 2], {2, 3}) == pytest.approx(ap[0])


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(7)
    t0 = 1_600_000_000_000
    cut_train, cut_valid = [t0, t0 + 7 * DAY], [t0 + 14 * DAY]
    write_rows(d / "train.arrow", *planted(rng, 300, 20, no_positive=25), FEATURES, cut_train)
    vq, va, vl, vx = planted(rng, 150, 20, no_positive=10, qid0=10_000)
    vx[:40, 5] = np.nan  # some NaN runs too
    write_rows(d / "valid.arrow", vq, va, vl, vx, FEATURES, cut_valid, stream=True)
    out = d / "model"
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--rows", str(d / "train.arrow"), "--valid",
         str(d / "valid.arrow"), "--out", str(out), "--trials", "2", "--num-boost-round", "150",
         "--early-stopping", "20"],
        capture_output=True, text=True, timeout=120, env=BASE_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    return {"dir": d, "out": out, "proc": proc, "valid": (vq, va, vl, vx),
            "cutoffs": (cut_train, cut_valid)}


def test_training_learns_the_planted_signal(trained: dict) -> None:
    proc = trained["proc"]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    assert summary["onnx_output"] == "variable"
    vq, va, vl, vx = trained["valid"]
    bounds = train.query_bounds(vq)
    rng = np.random.default_rng(0)
    random_map = np.mean(
        [train.map_at_k(rng.random(len(vq)), vl, bounds, np.array(va))[0] for _ in range(5)]
    )
    assert summary["valid_map12"] > 0.6
    assert summary["valid_map12"] > random_map + 0.3
    # one line per trial on stderr
    assert sum("trial " in line for line in proc.stderr.splitlines()) == 2
    # without MLFLOW_TRACKING_URI nothing is tracked, and nothing is said about it
    assert summary["tracking"] is None and "MLflow" not in proc.stderr


def test_model_json(trained: dict) -> None:
    out: Path = trained["out"]
    meta = json.loads((out / "model.json").read_text())
    for key in ("version", "kind", "objective", "features", "trees", "created_at", "onnx_input",
                "onnx_output", "onnx_sha256", "params", "cutoffs", "data_hash", "metrics",
                "parity", "tracking"):
        assert key in meta, key
    assert meta["tracking"] is None
    assert meta["kind"] == "lightgbm" and meta["objective"] == "lambdarank"
    assert meta["features"] == FEATURES
    assert isinstance(meta["trees"], int) and meta["trees"] >= 1
    assert meta["trees"] == meta["metrics"]["best_iteration"]
    assert meta["created_at"].endswith("Z")
    assert meta["onnx_input"] == "input" and meta["onnx_output"] == "variable"
    data = (out / "model.onnx").read_bytes()
    assert meta["onnx_sha256"] == hashlib.sha256(data).hexdigest()
    d = trained["dir"]
    both = (d / "train.arrow").read_bytes() + (d / "valid.arrow").read_bytes()
    assert meta["data_hash"] == hashlib.sha256(both).hexdigest()
    assert meta["version"] == f"lgbm-{meta['version'][5:19]}-{meta['data_hash'][:8]}"
    cut_train, cut_valid = trained["cutoffs"]
    assert meta["cutoffs"] == {"train": cut_train, "valid": cut_valid}
    for p in ("num_leaves", "learning_rate", "min_data_in_leaf", "feature_fraction",
              "bagging_fraction", "lambda_l2", "max_depth"):
        assert p in meta["params"], p
    assert meta["params"]["objective"] == "lambdarank" and meta["params"]["deterministic"]
    m = meta["metrics"]
    assert m["valid_queries"] == 150 and m["valid_queries_with_positive"] == 140
    assert m["train_queries"] == 275 and m["dropped_train_queries_without_positive"] == 25
    assert m["trials"] == 2 and 0 < m["valid_map12"] <= 1
    parity = meta["parity"]
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["row_sets"]["validation"] == 150 * 20 and parity["row_sets"]["all_nan"] == 1
    assert parity["row_sets"]["nan_masks"] == 2000 and parity["row_sets"]["split_thresholds"] > 0
    assert parity["rows"] == sum(parity["row_sets"].values())
    # the graph serving will load: one float input [N, F], one output [N, 1]
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert sess.get_inputs()[0].shape[1] == len(FEATURES)
    assert [o.name for o in sess.get_outputs()] == ["variable"]
    score = sess.run(["variable"], {"input": np.full((1, len(FEATURES)), np.nan, np.float32)})[0]
    assert score.shape == (1, 1) and score.dtype == np.float32
    assert (out / "model.lgb.txt").is_file()


def test_refit_ships_a_model_trained_on_the_later_weeks_too(trained: dict, tmp_path: Path) -> None:
    """--refit learns the --refit-with weeks too; --rolling scores each of them with a model trained
    on every row before it."""
    d = trained["dir"]
    rng = np.random.default_rng(11)
    later = tmp_path / "later.arrow"
    week1 = trained["cutoffs"][1][0] + 7 * DAY
    week2 = week1 + 7 * DAY
    q, a, lab, x = planted(rng, 100, 20, no_positive=5, qid0=20_000)
    write_rows(later, q, a, lab, x, FEATURES, [week1, week2])  # queries alternate between weeks
    out = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--rows", str(d / "train.arrow"), "--valid",
         str(d / "valid.arrow"), "--out", str(out), "--trials", "1", "--num-boost-round", "60",
         "--early-stopping", "10", "--min-rounds", "60", "--refit", "--refit-with", str(later),
         "--rolling", f"{week1},{week2}"],
        capture_output=True, text=True, timeout=120, env=BASE_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refit on" in proc.stderr
    shipped = json.loads((out / "model.json").read_text())
    assert shipped["cutoffs"]["refit"] == [week1, week2]
    assert shipped["metrics"]["refit_with_valid"] is True
    assert shipped["trees"] == 60
    assert check(out, d / "valid.arrow") == 0
    # One score per row of the later file, none missing, and informative on the planted signal.
    scores = np.frombuffer((out / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert scores.shape == (len(lab),)
    assert np.all(np.isfinite(scores))
    bounds = train.query_bounds(q)
    assert train.map_at_k(scores, lab, bounds)[0] > 2 * train.map_at_k(
        np.random.default_rng(0).random(len(lab)), lab, bounds)[0]
    # The week-1 model never saw week 1 or 2; the week-2 model saw week 1, not week 2: the two
    # weeks were scored by different models.
    assert "rolling week" in proc.stderr and proc.stderr.count("rolling week") == 2


def test_refit_with_needs_refit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--refit-with", "d"])


def check(out: Path, valid: Path, onnx_path: Path | None = None) -> int:
    return train.main(["--check-parity", str(onnx_path or out / "model.onnx"), "--meta",
                       str(out / "model.json"), "--valid", str(valid)])


def test_check_parity_passes_on_the_exported_model(trained: dict, capsys) -> None:
    assert check(trained["out"], trained["dir"] / "valid.arrow") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_check_parity_detects_changed_thresholds(trained: dict, tmp_path: Path, capsys) -> None:
    out: Path = trained["out"]
    model = onnx.load_from_string((out / "model.onnx").read_bytes())
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    attr = next(a for a in node.attribute if a.name == "nodes_values")
    attr.floats[:] = [v + 0.75 for v in attr.floats]
    bad = tmp_path / "model.onnx"
    bad.write_bytes(model.SerializeToString())
    code = train.main(["--check-parity", str(bad), "--meta", str(out / "model.json"), "--valid",
                       str(trained["dir"] / "valid.arrow"), "--booster",
                       str(out / "model.lgb.txt")])
    err = capsys.readouterr().err
    assert code != 0
    assert "parity check failed: max |onnx - lightgbm| = " in err and "> 0.0001" in err


def test_check_parity_detects_truncation(trained: dict, tmp_path: Path, capsys) -> None:
    out: Path = trained["out"]
    data = (out / "model.onnx").read_bytes()
    bad = tmp_path / "model.onnx"
    bad.write_bytes(data[: len(data) // 2])
    code = train.main(["--check-parity", str(bad), "--meta", str(out / "model.json"), "--valid",
                       str(trained["dir"] / "valid.arrow"), "--booster",
                       str(out / "model.lgb.txt")])
    assert code != 0
    assert "parity check failed" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Clear errors


def run_main(tmp_path: Path, train_file: Path, valid_file: Path) -> int:
    return train.main(["--rows", str(train_file), "--valid", str(valid_file), "--out",
                       str(tmp_path / "out"), "--trials", "1", "--num-boost-round", "5"])


def test_missing_file(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    valid = write_rows(tmp_path / "v.arrow", *planted(rng, 5, 4), FEATURES, [0])
    assert run_main(tmp_path, tmp_path / "nope.arrow", valid) == 1
    assert "missing file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_feature_columns(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    q, a, lab, x = planted(rng, 5, 4)
    rows = write_rows(tmp_path / "t.arrow", q, a, lab, x, None, [0])
    assert run_main(tmp_path, rows, rows) == 1
    assert "no feature columns" in capsys.readouterr().err


def test_no_positive_in_validation(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    tr = write_rows(tmp_path / "t.arrow", *planted(rng, 10, 4), FEATURES, [0])
    va = write_rows(tmp_path / "v.arrow", *planted(rng, 5, 4, no_positive=5), FEATURES, [DAY])
    assert run_main(tmp_path, tr, va) == 1
    assert (
        "too little data: the validation week has no purchases among the candidates"
        in capsys.readouterr().err
    )


def test_fewer_than_two_training_queries_with_positive(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    tr = write_rows(tmp_path / "t.arrow", *planted(rng, 10, 4, no_positive=9), FEATURES, [0])
    va = write_rows(tmp_path / "v.arrow", *planted(rng, 5, 4), FEATURES, [DAY])
    assert run_main(tmp_path, tr, va) == 1
    err = capsys.readouterr().err
    assert "too little data: 1 training queries with a purchase" in err
    assert not (tmp_path / "out").exists()


def test_non_contiguous_qid(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    q, a, lab, x = planted(rng, 4, 3)
    q = q[[0, 3, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]]
    rows = write_rows(tmp_path / "t.arrow", q, a, lab, x, FEATURES, [0])
    assert run_main(tmp_path, rows, rows) == 1
    assert "not contiguous" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# ONNX export parity: the exported model takes LightGBM's branch for every float32 input.
#
# `deviation` scores rows with train.export_onnx's model and with the booster, independently of
# train.parity, so these tests also measure an exporter that lacks the newer parity checks.

F32_MAX = float(np.finfo(np.float32).max)
ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (1e-35f)


def deviation(booster, rows: np.ndarray) -> np.ndarray:
    """|ONNX - LightGBM| per row, the ONNX model from train.export_onnx."""
    data, input_name, output_name = train.export_onnx(booster, rows.shape[1], "test")
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run([output_name], {input_name: rows.astype(np.float32)})[0].reshape(-1)
    return np.abs(got.astype(np.float64) - booster.predict(rows.astype(np.float32)))


def f32_around(t: float) -> list[float]:
    """The float32 nearest a double threshold, the two below it and the one above (the largest
    float32 <= t is among them)."""
    with np.errstate(over="ignore"):
        f = np.float32(t)
        down, up = np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))
        below = np.nextafter(down, np.float32(-np.inf))
    return sorted({float(below), float(down), float(f), float(up)})


def splits(booster) -> list[tuple[int, float, str, bool]]:
    """(feature, threshold, missing_type, default_left) of every split of the booster."""
    out = []
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            out.append((int(node["split_feature"]), float(node["threshold"]), node["missing_type"],
                        bool(node["default_left"])))
            stack += [node["left_child"], node["right_child"]]
    return out


def at_thresholds(booster, base: np.ndarray, rng: np.random.Generator, per_value: int = 8):
    """Rows of `base` with one feature set to a split threshold's float32 value or a neighbour."""
    values = {(f, v) for f, t, _, _ in splits(booster) for v in f32_around(t)}
    rows = []
    for f, v in sorted(values):
        picked = base[rng.integers(len(base), size=per_value)].copy()
        picked[:, f] = v
        rows.append(picked)
    return np.vstack(rows)


def shop_like(rng: np.random.Generator, queries: int, per_query: int):
    """Features shaped like the project's: integer counts, day counts some of which a float32
    computation left one ulp below the half day (12.499999 next to 12.5), prices, a decayed
    popularity with tiny values, NaN in some features (not in the counts); a planted signal."""
    n = queries * per_query
    counts = rng.poisson(2.0, size=(n, 2)).astype(np.float32)
    days = (rng.integers(0, 120, size=(n, 2)) / 2).astype(np.float32)
    nudged = rng.random(days.shape) < 0.4
    days[nudged] = np.nextafter(days[nudged], np.float32(-np.inf))
    price = rng.gamma(2.0, 0.02, size=(n, 1)).astype(np.float32)
    pop = np.exp(-rng.uniform(0, 90, size=(n, 1))).astype(np.float32)
    x = np.hstack([counts, days, price, pop]).astype(np.float32)
    x[:, 2:5][rng.random((n, 3)) < 0.1] = np.nan
    utility = counts[:, 0] - 0.1 * np.nan_to_num(x[:, 2], nan=60) + 20 * np.nan_to_num(x[:, 5])
    utility += rng.normal(scale=0.5, size=n)
    label = np.zeros(n, dtype=np.int32)
    for q in range(queries):
        s = q * per_query
        label[s + np.argsort(-utility[s : s + per_query])[: int(rng.integers(1, 3))]] = 1
    return x, label, [per_query] * queries


def test_export_takes_lightgbm_branch_when_two_thresholds_of_a_tree_share_a_float32() -> None:
    """The production failure (0.038 on the H&M sample). Reproduced on H&M rows: one tree split
    a_days_since_last_sold at 6.999999284744264 (between the adjacent float32 6.9999990 and
    6.9999995) and c_days_since_first at 6.999999523162843; both are 6.9999995 in float32 but need
    the float32 thresholds 6.9999990 and 6.9999995. The old export matched the converter's nodes
    by float32 value, could not tell them apart and left both at 6.9999995: a row with
    a_days_since_last_sold = 6.9999995 went left in ONNX, right in LightGBM (0.055 on 8 of 8,162
    validation rows). Here: 12.499999523 (12.499999 next to 12.5) and 12.500000000000002 (an
    integer feature), both 12.5 in float32."""
    import lightgbm as lgb

    half = np.float32(12.5)
    below = np.nextafter(half, np.float32(-np.inf))
    rng = np.random.default_rng(5)
    n = 2000
    x = np.column_stack([
        np.where(rng.random(n) < 0.5, below, half),  # day count, float32-rounded
        rng.integers(12, 14, size=n).astype(np.float32),  # integer count: 12 or 13
    ]).astype(np.float32)
    y = 2.0 * (x[:, 0] == half) + 1.0 * (x[:, 1] == 13)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "min_data_in_leaf": 5, "num_leaves": 4},
        lgb.Dataset(x, y), 3,
    )
    found = {(f, t) for f, t, _, _ in splits(booster)}
    assert any(f == 0 and np.float32(t) == half and t < 12.5 for f, t in found)
    assert any(f == 1 and np.float32(t) == half and t > 12.5 for f, t in found)
    assert deviation(booster, x).max() <= 1e-4


def test_export_nan_follows_lightgbm_missing_type_none_whatever_default_left() -> None:
    """missing_type None (no NaN in training): LightGBM reads NaN as 0.0 and compares it, so NaN
    goes left exactly when 0 <= threshold, whatever default_left says. The converter derives the
    ONNX NaN direction from default_left; LightGBM 4.7 training always sets default_left on such
    splits (then the two agree), a model with default_left false (other versions, edited files)
    sent NaN right in ONNX where LightGBM went left."""
    import re

    import lightgbm as lgb

    rng = np.random.default_rng(6)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    y = x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.1, size=3000)
    trained = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 8},
                        lgb.Dataset(x, y), 10)
    kinds = {(m, d, t >= 0) for _, t, m, d in splits(trained)}
    assert ("None", True, True) in kinds and ("None", True, False) in kinds
    rows = x[:500].copy()
    rows[rng.random(rows.shape) < 0.5] = np.nan
    rows = np.vstack([rows, np.full((1, 3), np.nan, np.float32)])
    # As trained, already right before the fix:
    assert deviation(trained, rows).max() <= 1e-4
    # decision_type 2 = default_left, missing None; 0 = default right, missing None.
    text = re.sub(r"^decision_type=.*$", lambda m: m.group(0).replace("2", "0"),
                  trained.model_to_string(), flags=re.M)
    edited = lgb.Booster(model_str=text)
    assert {d for _, _, m, d in splits(edited)} == {False}
    assert deviation(edited, rows).max() <= 1e-4


def zero_or_negative_rows(n: int = 2000) -> np.ndarray:
    """Feature 0 is 0 or a small negative integer (splits near zero), feature 1 uniform."""
    rng = np.random.default_rng(7)
    return np.column_stack([
        np.where(rng.random(n) < 0.5, -rng.integers(1, 4, size=n), 0).astype(np.float32),
        rng.random(n).astype(np.float32),
    ]).astype(np.float32)


def test_export_matches_lightgbm_in_the_zero_band() -> None:
    """LightGBM's predictor reads |x| <= kZeroThreshold (float32 1e-35) as 0.0, and puts a split
    between negative values and zero at -kZeroThreshold: x = -kZeroThreshold goes right in
    LightGBM (as 0) but satisfied x <= -kZeroThreshold in ONNX."""
    import lightgbm as lgb

    x = zero_or_negative_rows()
    y = (x[:, 0] < 0).astype(float)
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, y), 3)
    assert any(t == -ZERO for _, t, _, _ in splits(booster))
    band = [0.0, -0.0, -ZERO, ZERO, -ZERO / 2, ZERO / 2, -1e-40, 1e-40,
            float(np.nextafter(np.float32(-ZERO), np.float32(-1)))]
    rows = np.repeat(x[:20], len(band), axis=0)
    rows[:, 0] = np.tile(band, 20)
    assert deviation(booster, rows).max() <= 1e-4


def test_export_sends_infinity_like_lightgbm_at_its_infinite_threshold() -> None:
    """A split of the numbers from NaN has an infinite threshold, kept as 1e300 (AvoidInf);
    LightGBM sends +inf left there, with every other number, the float32-max threshold right."""
    import lightgbm as lgb

    rng = np.random.default_rng(8)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    x[rng.random(2000) < 0.3, 0] = np.nan
    y = np.isnan(x[:, 0]).astype(float)
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, y), 2)
    assert any(t >= 1e300 for _, t, _, _ in splits(booster))
    rows = np.repeat(x[:10], 5, axis=0)
    rows[:, 0] = np.tile([np.inf, -np.inf, F32_MAX, np.nan, 0.0], 10)
    assert deviation(booster, rows).max() <= 1e-4


def test_export_refuses_missing_type_zero() -> None:
    """zero_as_missing=true gives missing_type Zero: the zero band takes the default branch, which
    one ONNX test cannot express. The trainer never sets it; the export refuses such a model."""
    import lightgbm as lgb

    rng = np.random.default_rng(9)
    x = np.where(rng.random((2000, 2)) < 0.3, 0, rng.normal(size=(2000, 2))).astype(np.float32)
    y = (x[:, 0] > 0.2).astype(float) + (x[:, 0] == 0)
    booster = lgb.train({"objective": "regression", "verbose": -1, "zero_as_missing": True},
                        lgb.Dataset(x, y), 2)
    assert any(m == "Zero" for _, _, m, _ in splits(booster))
    with pytest.raises(train.TrainError, match="zero_as_missing"):
        train.export_onnx(booster, 2, "zero")


def test_export_matches_lightgbm_at_every_split_threshold_of_a_shop_like_model() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(10)
    x, y, group = shop_like(rng, 300, 20)
    booster = lgb.train({**train.base_params(1), "num_leaves": 31, "min_data_in_leaf": 20},
                        lgb.Dataset(x, y, group=group), 60)
    rows = np.vstack([x, at_thresholds(booster, x, rng)])
    assert deviation(booster, rows).max() <= 1e-4


def test_parity_holds_for_random_lightgbm_params() -> None:
    """Several random parameter sets on shop-like rows: the export passes the full parity check
    (validation rows, NaN masks, every split threshold and its float32 neighbours, the zero band),
    and an independent scoring of the rows at every threshold agrees."""
    import lightgbm as lgb

    rng = np.random.default_rng(11)
    x, y, group = shop_like(rng, 200, 20)
    vx, _, _ = shop_like(rng, 50, 20)
    dtrain = lgb.Dataset(x, y, group=group, free_raw_data=False,
                         params={"feature_pre_filter": False, "verbose": -1})
    for _ in range(5):
        params = {
            **train.base_params(int(rng.integers(1000))),
            "num_leaves": int(rng.integers(4, 64)),
            "learning_rate": float(rng.uniform(0.01, 0.3)),
            "min_data_in_leaf": int(rng.integers(5, 100)),
            "feature_fraction": float(rng.uniform(0.5, 1.0)),
            "bagging_fraction": float(rng.uniform(0.5, 1.0)),
            "lambda_l2": float(rng.uniform(0, 10)),
            "max_depth": int(rng.integers(3, 13)),
        }
        booster = lgb.train(params, dtrain, int(rng.integers(20, 80)))
        rows = np.vstack([vx, at_thresholds(booster, vx, rng, 2)])
        assert deviation(booster, rows).max() <= 1e-4, params
        data, input_name, output_name = train.export_onnx(booster, x.shape[1], "random")
        check = train.parity(data, input_name, output_name, booster, vx)
        assert check.max_abs_diff <= 1e-4, params
        assert check.row_sets["split_thresholds"] >= 3 * len(splits(booster))


def test_parity_check_finds_what_the_validation_rows_miss() -> None:
    """The converter's raw output (no threshold alignment) passes on rows without values at the
    thresholds or in the zero band, and fails the parity check, which scores those too."""
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x = zero_or_negative_rows()
    y = (x[:, 0] < 0).astype(float) + x[:, 1]
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, y), 5)
    raw = convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, 2]))],
                           zipmap=False)
    valid = x[:500]
    sess = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": valid})[0].reshape(-1)
    assert np.abs(got - booster.predict(valid)).max() <= 1e-4
    with pytest.raises(train.TrainError, match=r"parity check failed: .*rows above: .*zero_band"):
        train.parity(raw.SerializeToString(), "input", raw.graph.output[0].name, booster, valid)


def test_export_matches_lightgbm_when_data_sits_on_adjacent_float32_values() -> None:
    """A split between two adjacent float32 values has a double midpoint threshold that rounds to
    one of them in float32; without lowering the thresholds ONNX sends that value the other way."""
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    lo = np.float32(0.0123)
    hi = np.nextafter(lo, np.float32(1))
    n = 4000
    col = np.where(rng.random(n) < 0.5, lo, hi).astype(np.float32)
    noise = rng.random((n, 2)).astype(np.float32)
    x = np.column_stack([col, noise]).astype(np.float32)
    y = ((col == hi) ^ (rng.random(n) < 0.1)).astype(np.int32)
    booster = lgb.train(
        {"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5, "seed": 1},
        lgb.Dataset(x, y, group=[40] * (n // 40)),
        20,
    )
    data, input_name, output_name = train.export_onnx(booster, x.shape[1], "adjacent")
    assert train.parity(data, input_name, output_name, booster, x).max_abs_diff <= 1e-4


# ---------------------------------------------------------------------------------------------
# MLflow tracking (real mlflow; the HTTP server itself: test/integration/mlflow.test.ts)


def small_rows(d: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(21)
    t0 = 1_600_000_000_000
    tr = write_rows(d / "train.arrow", *planted(rng, 60, 10, no_positive=5), FEATURES, [t0])
    va = write_rows(d / "valid.arrow", *planted(rng, 30, 10, qid0=1000), FEATURES, [t0 + 7 * DAY])
    return tr, va


def run_trainer(d: Path, env: dict[str, str], trials: int = 2) -> subprocess.CompletedProcess:
    tr, va = small_rows(d)
    return subprocess.run(
        [sys.executable, str(TRAIN_PY), "--rows", str(tr), "--valid", str(va), "--out",
         str(d / "model"), "--trials", str(trials), "--num-boost-round", "30", "--early-stopping",
         "10", "--version", "mlflow-test"],
        capture_output=True, text=True, timeout=180, env={**BASE_ENV, **env},
    )


# MLflow 3.17's SQL store uses a SQLAlchemy loader option that SQLAlchemy 2.1 deprecates.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_mlflow_logs_the_run_to_a_tracking_store(tmp_path: Path) -> None:
    """A local SQLite tracking store (no server): the run, its trials and files are there."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    # The experiment exists beforehand with its artifacts under tmp_path (a store without a
    # server would put them in ./mlruns).
    experiment_id = client.create_experiment("ranker-test", artifact_location=str(tmp_path / "art"))
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "ranker-test"}
    proc = run_trainer(tmp_path, env, trials=3)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # MLflow prints nothing to stdout
    summary = json.loads(lines[0])
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert summary["tracking"] == meta["tracking"]
    assert meta["tracking"]["uri"] == uri and meta["tracking"]["experiment_id"] == experiment_id
    run = client.get_run(meta["tracking"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "mlflow-test"
    assert run.data.tags["version"] == "mlflow-test"
    assert run.data.tags["data_hash"] == meta["data_hash"]
    # every LightGBM param of the shipped model and the run's settings
    for key, value in meta["params"].items():
        assert run.data.params[key] == (json.dumps(value) if isinstance(value, (list, bool))
                                        else str(value)), key
    assert run.data.params["trials"] == "3" and run.data.params["seed"] == "42"
    assert json.loads(run.data.params["features"]) == FEATURES
    assert run.data.metrics["valid_map12"] == pytest.approx(meta["metrics"]["valid_map12"])
    assert run.data.metrics["parity_max_abs_diff"] == pytest.approx(meta["parity"]["max_abs_diff"])
    history = client.get_metric_history(run.info.run_id, "trial_map12")
    assert sorted(m.step for m in history) == [0, 1, 2]
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert sorted(c.data.tags["trial"] for c in children) == ["0", "1", "2"]
    for child in children:
        assert set(child.data.metrics) == {"map12", "best_iteration", "seconds"}
        assert "num_leaves" in child.data.params and child.info.status == "FINISHED"
    shipped = [c for c in children if c.data.tags["shipped"] == "true"]
    assert len(shipped) == 1 and shipped[0].data.tags["parity"] == "passed"
    assert shipped[0].data.metrics["map12"] == pytest.approx(meta["metrics"]["valid_map12"])
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert files == {"model.onnx", "model.json", "model.lgb.txt"}
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "model.json",
                                                       str(tmp_path))).read_text())
    assert logged["tracking"]["run_id"] == run.info.run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_unreachable_server_warns_and_still_writes_the_model(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.perf_counter()
    proc = run_trainer(tmp_path, {"MLFLOW_TRACKING_URI": uri})
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert f"warning: MLflow tracking at {uri} failed" in proc.stderr
    assert json.loads(proc.stdout)["tracking"] is None
    assert json.loads((tmp_path / "model" / "model.json").read_text())["tracking"] is None
    assert (tmp_path / "model" / "model.onnx").is_file()
    # A few quick retries, not MLflow's default 7 with backoff (minutes).
    assert seconds < 45, seconds


def test_mlflow_not_importable_warns(monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    for key, value in train.MLFLOW_HTTP_DEFAULTS.items():
        monkeypatch.setenv(key, value)  # restored after the test
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    assert train.start_mlflow_run(version="v", digest="d", started=train.utc_now()) is None
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI is set (http://127.0.0.1:1) but mlflow cannot be imported" in err


def test_tracking_uri_credentials_stay_out_of_model_json() -> None:
    assert train._public_uri("https://ann:secret@mlflow.example:5000/x") == \
        "https://mlflow.example:5000/x"
    assert train._public_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert train._public_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"

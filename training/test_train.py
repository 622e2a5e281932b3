"""Tests of training/train.py: MAP@12 by hand, an end-to-end run on planted data, parity checks.

    .venv/bin/python -m pytest training -q
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
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
        capture_output=True, text=True, timeout=120,
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


def test_model_json(trained: dict) -> None:
    out: Path = trained["out"]
    meta = json.loads((out / "model.json").read_text())
    for key in ("version", "kind", "objective", "features", "trees", "created_at", "onnx_input",
                "onnx_output", "onnx_sha256", "params", "cutoffs", "data_hash", "metrics",
                "parity"):
        assert key in meta, key
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
    assert meta["parity"]["max_abs_diff"] <= 1e-4 and meta["parity"]["rows"] == 150 * 20 + 1
    # the graph serving will load: one float input [N, F], one output [N, 1]
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert sess.get_inputs()[0].shape[1] == len(FEATURES)
    assert [o.name for o in sess.get_outputs()] == ["variable"]
    score = sess.run(["variable"], {"input": np.full((1, len(FEATURES)), np.nan, np.float32)})[0]
    assert score.shape == (1, 1) and score.dtype == np.float32
    assert (out / "model.lgb.txt").is_file()


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
# MLflow (optional)


def test_mlflow_not_installed_warns(trained: dict, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///nonexistent")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    meta = json.loads((trained["out"] / "model.json").read_text())
    train.log_mlflow(meta, trained["out"])
    assert "pip install mlflow" in capsys.readouterr().err


def test_mlflow_logs_params_metrics_and_files(trained: dict, monkeypatch) -> None:
    import contextlib
    import types

    calls: dict[str, list] = {"params": [], "metrics": [], "artifacts": [], "runs": []}
    fake = types.ModuleType("mlflow")
    fake.start_run = lambda run_name: (calls["runs"].append(run_name), contextlib.nullcontext())[1]
    fake.log_params = calls["params"].append
    fake.log_metrics = calls["metrics"].append
    fake.set_tags = lambda tags: None
    fake.log_artifact = calls["artifacts"].append
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///nonexistent")
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    meta = json.loads((trained["out"] / "model.json").read_text())
    train.log_mlflow(meta, trained["out"])
    assert calls["runs"] == [meta["version"]]
    assert calls["params"][0]["num_leaves"] == meta["params"]["num_leaves"]
    assert calls["metrics"][0]["valid_map12"] == meta["metrics"]["valid_map12"]
    assert sorted(Path(a).name for a in calls["artifacts"]) == [
        "model.json", "model.lgb.txt", "model.onnx"]


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
    diff, _ = train.parity(data, input_name, output_name, booster, x)
    assert diff <= 1e-4

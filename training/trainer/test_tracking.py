"""MLflow tracking (tracking.py) with real mlflow: a local store, an unreachable server, mlflow
missing, credentials kept out of model.json."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import tracking
from .output import utc_now
from .testdata import BASE_ENV, DAY, FEATURES, ROOT, TRAINER, planted, write_rows


# ---------------------------------------------------------------------------------------------
# MLflow tracking (real mlflow; the HTTP server itself: test/integration/mlflow.test.ts)


def small_rows(d: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(21)
    t0 = 1_600_000_000_000
    tr = write_rows(d / "train.arrow", *planted(rng, 60, 10, no_positive=5), FEATURES, [t0])
    va = write_rows(d / "valid.arrow", *planted(rng, 30, 10, qid0=1000), FEATURES, [t0 + 7 * DAY])
    return tr, va


def run_trainer(d: Path, env: dict[str, str], trials: int = 2,
                *flags: str) -> subprocess.CompletedProcess:
    tr, va = small_rows(d)
    return subprocess.run(
        [*TRAINER, "--rows", str(tr), "--valid", str(va), "--out",
         str(d / "model"), "--trials", str(trials), "--num-boost-round", "30", "--early-stopping",
         "10", "--version", "mlflow-test", *flags],
        capture_output=True, text=True, timeout=180, env={**BASE_ENV, **env}, cwd=ROOT,
    )


def local_store(tmp_path: Path) -> tuple[str, Any, str, dict[str, str]]:
    """A local SQLite tracking store (no server) and its experiment: the URI, a client, the
    experiment id and the trainer's environment to track there. The experiment exists beforehand
    with its artifacts under tmp_path (a store without a server would put them in ./mlruns)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("ranker-test", artifact_location=str(tmp_path / "art"))
    return uri, client, experiment_id, {"MLFLOW_TRACKING_URI": uri,
                                        "MLFLOW_EXPERIMENT_NAME": "ranker-test"}


# MLflow 3.17's SQL store uses a SQLAlchemy loader option that SQLAlchemy 2.1 deprecates.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_mlflow_logs_the_run_to_a_tracking_store(tmp_path: Path) -> None:
    """A local SQLite tracking store (no server): the run, its trials and files are there."""
    uri, client, experiment_id, env = local_store(tmp_path)
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


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_mlflow_logs_a_run_without_a_search(tmp_path: Path) -> None:
    """--no-search: the run, its params and files, no trial and no validation score."""
    _, client, experiment_id, env = local_store(tmp_path)
    proc = run_trainer(tmp_path, env, 1, "--refit", "--no-search")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["metrics"]["valid_map12"] is None
    run = client.get_run(meta["tracking"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["no_search"] == "true" and run.data.tags["trials"] == "0"
    assert "valid_map12" not in run.data.metrics and "parity_max_abs_diff" in run.data.metrics
    assert client.get_metric_history(run.info.run_id, "trial_map12") == []
    assert client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    ) == []
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {
        "model.onnx", "model.json", "model.lgb.txt"}


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
    for key, value in tracking.MLFLOW_HTTP_DEFAULTS.items():
        monkeypatch.setenv(key, value)  # restored after the test
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    assert tracking.start_mlflow_run(version="v", digest="d", started=utc_now()) is None
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI is set (http://127.0.0.1:1) but mlflow cannot be imported" in err


def test_tracking_uri_credentials_stay_out_of_model_json() -> None:
    assert tracking._public_uri("https://ann:secret@mlflow.example:5000/x") == \
        "https://mlflow.example:5000/x"
    assert tracking._public_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert tracking._public_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"

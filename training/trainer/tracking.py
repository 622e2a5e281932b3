"""MLflow tracking, optional: when MLFLOW_TRACKING_URI is set (a tracking server, or a local store
such as sqlite:///path), the training is logged as one run named after the version in the
experiment MLFLOW_EXPERIMENT_NAME (default fashion-recsys-ranker): every LightGBM param of the
shipped model and the run's settings, the final metrics, one child run per Optuna trial (its
searched params, map12, best_iteration, seconds; tags shipped / parity) and the same trials as
step-indexed metrics (trial_map12, trial_best_iteration), tags version and data_hash, and the
three files.

model.json and the summary line carry `tracking` {uri (without credentials), experiment_id,
run_id}, null when nothing was tracked. A tracking failure only warns (naming the URI): the model
is still written, with tracking null. Unless set, MLFLOW_HTTP_REQUEST_MAX_RETRIES=2,
_BACKOFF_FACTOR=1 and _TIMEOUT=15 (MLflow's defaults retry for minutes).

The order (cli.py): `start_mlflow_run` and `log_mlflow_search` before the files are written, so
model.json can link the run; `finish_mlflow_run` uploads the files after.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import log
from .search import DEFAULT_TRIAL, Trained

DEFAULT_EXPERIMENT = "fashion-recsys-ranker"
# MLflow's own defaults retry a failed request 7 times with exponential backoff and wait up to
# 120 s per request: an unreachable tracking server would hold training for minutes. Set only
# when not set (an explicit setting wins).
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
UNTRACKED = "The model is written without tracking (tracking: null in model.json)."


@dataclass
class MlflowRun:
    """A run being logged: the client and the ids model.json links to."""

    client: Any  # mlflow.MlflowClient
    uri: str  # without credentials
    experiment_id: str
    run_id: str

    def link(self) -> dict[str, str]:
        return {"uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}


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


def _warn_mlflow(uri: str, what: str, err: BaseException, after: str) -> None:
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else ""
    log(f"warning: MLflow tracking at {uri} failed ({what}): {type(err).__name__}: {first}. "
        f"{after}")


def _param_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)


# ---- the run


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
            experiment_id = _experiment_id(client, name)
            run = client.create_run(
                experiment_id,
                start_time=_ms(started),
                run_name=version,
                tags={"version": version, "data_hash": digest,
                      "mlflow.source.name": "training/trainer", "mlflow.source.type": "LOCAL"},
            )
    except Exception as err:  # noqa: BLE001 - tracking is optional: the model is still written
        _warn_mlflow(uri, f"creating a run in experiment {name!r}", err, UNTRACKED)
        return None
    log(f"MLflow: run {run.info.run_id} in experiment {name!r} ({experiment_id}) at {uri}")
    return MlflowRun(client, uri, experiment_id, run.info.run_id)


def _experiment_id(client: Any, name: str) -> str:
    """The id of experiment `name`, created when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another trainer may have just created it
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return again.experiment_id


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
    parity; `ranked` is empty when nothing was searched (`--no-search`). False (warned, run
    marked FAILED) when the server fails."""
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
    chosen_trial = ranked[chosen].trial if ranked else None
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
            _log_trial_runs(run, meta, by_trial, chosen, now)
    except Exception as err:  # noqa: BLE001 - tracking is optional
        _warn_mlflow(run.uri, f"logging run {run.run_id}", err, UNTRACKED)
        _fail_mlflow_run(run)
        return False
    return True


def _log_trial_runs(
    run: MlflowRun,
    meta: dict[str, Any],
    by_trial: Sequence[tuple[int, int, Trained]],
    chosen: int,
    now: int,
) -> None:
    """One child run per trial (number, rank in `ranked`, trial), FINISHED at the trial's end."""
    from mlflow.entities import Metric, Param

    client = run.client
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

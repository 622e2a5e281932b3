"""The trainer end to end, as training/fit.ts runs it: training on planted data, model.json,
refit and rolling scores, --check-parity on the exported model and on tampered ones, and the clear
errors of bad input (cli.py and the modules it runs)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from . import cli
from .metrics import map_at_k, query_bounds
from .testdata import BASE_ENV, DAY, FEATURES, ROOT, TRAINER, planted, write_rows


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
        [*TRAINER, "--rows", str(d / "train.arrow"), "--valid",
         str(d / "valid.arrow"), "--out", str(out), "--trials", "2", "--num-boost-round", "150",
         "--early-stopping", "20"],
        capture_output=True, text=True, timeout=120, env=BASE_ENV, cwd=ROOT,
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
    bounds = query_bounds(vq)
    rng = np.random.default_rng(0)
    random_map = np.mean(
        [map_at_k(rng.random(len(vq)), vl, bounds, np.array(va))[0] for _ in range(5)]
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
    proc = _train_again(trained, out, 60, "--refit", "--refit-with", str(later),
                        "--rolling", f"{week1},{week2}")
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
    bounds = query_bounds(q)
    assert map_at_k(scores, lab, bounds)[0] > 2 * map_at_k(
        np.random.default_rng(0).random(len(lab)), lab, bounds)[0]
    # The week-1 model never saw week 1 or 2; the week-2 model saw week 1, not week 2: the two
    # weeks were scored by different models.
    assert "rolling week" in proc.stderr and proc.stderr.count("rolling week") == 2


def _train_again(trained: dict, out: Path, rounds: int, *flags: str) -> subprocess.CompletedProcess:
    """The trainer on the fixture's training and validation rows: one trial of exactly `rounds`
    trees, to `out`, with `flags`; it must succeed."""
    d = trained["dir"]
    proc = subprocess.run(
        [*TRAINER, "--rows", str(d / "train.arrow"), "--valid", str(d / "valid.arrow"), "--out",
         str(out), "--trials", "1", "--num-boost-round", str(rounds), "--early-stopping", "10",
         "--min-rounds", str(rounds), *flags],
        capture_output=True, text=True, timeout=120, env=BASE_ENV, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _later_week(trained: dict, tmp_path: Path, seed: int) -> tuple[Path, int, np.ndarray]:
    """Rows of one later week (the week after the fixture's validation week) for --refit-with:
    the file, the week's cutoff and the labels, 100 planted queries of 20 candidates."""
    later = tmp_path / "later.arrow"
    week1 = trained["cutoffs"][1][0] + 7 * DAY
    q, a, lab, x = planted(np.random.default_rng(seed), 100, 20, no_positive=5, qid0=20_000)
    write_rows(later, q, a, lab, x, FEATURES, [week1])
    return later, week1, lab


def _later_weeks(trained: dict, tmp_path: Path, seed: int) -> tuple[Path, list[int]]:
    """Rows of three later weeks (from the week after the fixture's validation week) for
    --refit-with and --rolling: the file and the weeks' cutoffs, 240 planted queries of 20
    candidates, alternating between the weeks."""
    week1 = trained["cutoffs"][1][0] + 7 * DAY
    weeks = [week1, week1 + 7 * DAY, week1 + 14 * DAY]
    later = tmp_path / "later.arrow"
    q, a, lab, x = planted(np.random.default_rng(seed), 240, 20, no_positive=5, qid0=20_000)
    write_rows(later, q, a, lab, x, FEATURES, weeks)
    return later, weeks


def _positive_queries(path: Path) -> dict[int, int]:
    """Per cutoff, the queries of a rows file holding a purchase."""
    from .data import read_rows

    d = read_rows(path)
    cut, pos = d.query_cutoffs("test"), d.positives_per_query() > 0
    return {int(c): int((pos & (cut == c)).sum()) for c in np.unique(cut)}


def test_fit_weeks_bound_the_refit_and_each_rolling_fit(trained: dict, tmp_path: Path) -> None:
    """--fit-weeks 4: the refit learns the 4 weeks before the end, each rolling fit the 4 weeks
    before its week, --history rows included; older rows are left out. The last week has no
    purchase among its candidates: the end is still read from its cutoff."""
    d = trained["dir"]
    (t0, t1), (tv,) = trained["cutoffs"]
    rng = np.random.default_rng(13)
    week1, week2, older = tv + 7 * DAY, tv + 14 * DAY, t0 - 7 * DAY
    later, history = tmp_path / "later.arrow", tmp_path / "history.arrow"
    lq, la, ll, lx = planted(rng, 100, 20, no_positive=5, qid0=20_000)
    ll[lq % 2 == 1] = 0  # write_rows puts odd queries at week2
    write_rows(later, lq, la, ll, lx, FEATURES, [week1, week2])
    hq, ha, hl, hx = planted(rng, 60, 20, no_positive=4, qid0=30_000)
    write_rows(history, hq, ha, hl, hx, FEATURES, [older])
    out = tmp_path / "model"
    proc = _train_again(trained, out, 30, "--refit", "--refit-with", str(later), "--fit-weeks", "4",
                        "--rolling", f"{week1},{week2}", "--history", str(history))
    per = _positive_queries(d / "train.arrow")
    valid = _positive_queries(d / "valid.arrow")[tv]
    lat = _positive_queries(later)
    hist = _positive_queries(history)[older]
    # The refit: weeks t1, tv, week1, week2 (the end is week2 + 7 days); t0 is the fifth week back.
    assert lat[week2] == 0
    assert f"refit on {per[t1]} + {valid} + {lat[week1]} queries" in proc.stderr
    day = lambda t: str(np.datetime64(t, "ms").astype("datetime64[D]"))  # noqa: E731
    # Week 1's fit: older (history), t0, t1, tv. Week 2's: t0, t1, tv, week1.
    n1 = hist + per[t0] + per[t1] + valid
    n2 = per[t0] + per[t1] + valid + lat[week1]
    assert f"rolling week {day(week1)}: trained on {n1} queries" in proc.stderr
    assert f"rolling week {day(week2)}: trained on {n2} queries" in proc.stderr
    scores = np.frombuffer((out / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert scores.shape == (len(ll),) and np.all(np.isfinite(scores))
    # --fit-weeks 6 reaches the history week from the end: the refit learns from it too, as the
    # rolling fits do (without them as well).
    wide = tmp_path / "wide"
    proc = _train_again(trained, wide, 30, "--refit", "--refit-with", str(later), "--fit-weeks", "6",
                        "--history", str(history))
    n = f"{hist} + {per[t0] + per[t1]} + {valid} + {lat[week1]}"
    assert f"refit on {n} queries" in proc.stderr


def test_negatives_thin_every_training_set_and_score_every_row(
    trained: dict, tmp_path: Path
) -> None:
    """--negatives 0.5: the search, the refit and the rolling fits train on every purchase and
    about half the other rows; the rolling scores still cover every row of the later weeks."""
    d = trained["dir"]
    later, week1, lab = _later_week(trained, tmp_path, 11)
    out = tmp_path / "model"
    proc = _train_again(trained, out, 40, "--negatives", "0.5", "--refit", "--refit-with",
                        str(later), "--rolling", str(week1))
    full = json.loads((trained["out"] / "model.json").read_text())["metrics"]["train_rows"]
    shipped = json.loads((out / "model.json").read_text())
    kept = shipped["metrics"]["train_rows"]
    assert f"kept {kept} of {full} training rows" in proc.stderr
    assert 0.4 * full < kept < 0.65 * full  # the positives (~2 in 20) and half of the rest
    assert shipped["params"]["negative_share"] == 0.5
    assert json.loads((trained["out"] / "model.json").read_text())["params"]["negative_share"] == 1
    scores = np.frombuffer((out / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert scores.shape == (len(lab),) and np.all(np.isfinite(scores))
    assert check(out, d / "valid.arrow") == 0


def test_blend_ships_one_model_of_both_that_passes_parity(trained: dict, tmp_path: Path) -> None:
    """--blend 0.6: the refit and the rolling fits each train a binary booster beside LambdaRank;
    the shipped model holds both tree lists, its ONNX export passes the parity check, model.json
    records the weight; below --large-from, LambdaRank ships alone."""
    d = trained["dir"]
    later, week1, lab = _later_week(trained, tmp_path, 12)
    out = tmp_path / "model"
    proc = _train_again(trained, out, 30, "--blend", "0.6", "--refit", "--refit-with", str(later),
                        "--rolling", str(week1))
    meta = json.loads((out / "model.json").read_text())
    # 30 LambdaRank trees and a third as many binary ones
    assert meta["params"]["blend"] == 0.6 and meta["trees"] == 40
    assert meta["params"]["blend_speedup"] == 3
    assert "large data (" in proc.stderr and "): a binary blend at 0.6" in proc.stderr
    assert "30 rounds, a binary model blended in at 0.6" in proc.stderr
    assert check(out, d / "valid.arrow") == 0
    scores = np.frombuffer((out / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert scores.shape == (len(lab),) and np.all(np.isfinite(scores))
    # the blend moves the scores: not the model LambdaRank alone would ship
    alone = tmp_path / "alone"
    queries = meta["metrics"]["train_queries"]
    proc = _train_again(trained, alone, 30, "--blend", "0.6", "--large-from", str(queries + 1),
                        "--refit", "--refit-with", str(later), "--rolling", str(week1))
    plain = json.loads((alone / "model.json").read_text())
    assert plain["params"]["blend"] == 0 and plain["trees"] == 30
    assert (f"small data ({queries} training queries with a purchase, large from {queries + 1}): "
            "LambdaRank alone") in proc.stderr
    other = np.frombuffer((alone / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert not np.allclose(scores, other)


def test_sized_features_are_left_out_below_their_data_size(trained: dict, tmp_path: Path) -> None:
    """--sized-features f4,f5: from --large-from training queries with a purchase on the
    model uses them, below it leaves them out everywhere (search, refit with later weeks, rolling
    fits); model.json lists the features it takes and the ones left out, and the export passes
    the parity check against rows that still hold every column."""
    d = trained["dir"]
    later, week1, lab = _later_week(trained, tmp_path, 13)
    queries = json.loads((trained["out"] / "model.json").read_text())["metrics"]["train_queries"]
    sized = ["--sized-features", "f4,f5", "--refit", "--refit-with", str(later),
             "--rolling", str(week1)]
    out = tmp_path / "small"
    proc = _train_again(trained, out, 30, *sized, "--large-from", str(queries + 1))
    meta = json.loads((out / "model.json").read_text())
    assert meta["features"] == FEATURES[:4]
    assert meta["params"]["left_out_features"] == ["f4", "f5"]
    assert lgb.Booster(model_file=str(out / "model.lgb.txt")).num_feature() == 4
    assert "left out 2 feature(s) (f4, f5)" in proc.stderr
    assert (f"small data ({queries} training queries with a purchase, large from {queries + 1}): "
            "no sized features") in proc.stderr
    assert check(out, d / "valid.arrow") == 0
    scores = np.frombuffer((out / "rolling_scores.f32").read_bytes(), dtype="<f4")
    assert scores.shape == (len(lab),) and np.all(np.isfinite(scores))
    # at the data size, every feature
    out = tmp_path / "large"
    proc = _train_again(trained, out, 30, *sized, "--large-from", str(queries))
    meta = json.loads((out / "model.json").read_text())
    assert meta["features"] == FEATURES and meta["params"]["left_out_features"] == []
    assert "left out" not in proc.stderr


def test_no_search_ships_the_model_the_search_would_have_refitted(trained: dict,
                                                                   tmp_path: Path) -> None:
    """--no-search with one trial of fixed trees and a refit: no search model is trained, and the
    shipped model and its rolling scores are exactly those of the search path; model.json has no
    validation score. It refuses more trials and a missing refit."""
    later, week1, _ = _later_week(trained, tmp_path, 14)
    refit = ["--refit", "--refit-with", str(later), "--rolling", str(week1)]
    searched, direct = tmp_path / "searched", tmp_path / "direct"
    proc = _train_again(trained, searched, 30, *refit)
    assert "trial 1/1: map@12=" in proc.stderr
    proc = _train_again(trained, direct, 30, *refit, "--no-search")
    assert "trial 1/1: not searched" in proc.stderr and "map@12=" not in proc.stderr
    for name in ("model.lgb.txt", "rolling_scores.f32"):
        assert (direct / name).read_bytes() == (searched / name).read_bytes(), name
    meta = json.loads((direct / "model.json").read_text())
    assert meta["metrics"]["valid_map12"] is None and meta["trees"] == 30
    assert json.loads(proc.stdout)["valid_map12"] is None
    assert json.loads((searched / "model.json").read_text())["metrics"]["valid_map12"] > 0
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--no-search"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--refit", "--no-search",
                        "--trials", "2"])


def test_blend_needs_refit_and_a_weight_of_zero_or_more() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--blend", "0.5"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--refit", "--blend", "-1"])
    ok = cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--refit", "--blend", "0.5"])
    assert ok.blend == 0.5 and ok.large_from == 0


def test_thin_negatives_draws_a_week_alike_whichever_file_holds_it(tmp_path: Path) -> None:
    """Seeded per cutoff: a week's rows keep the same rows thinned alone or beside another week,
    so a rolling fit of that week learns from the same rows in every cycle (the fit cache)."""
    from .data import read_rows

    q, a, lab, x = planted(np.random.default_rng(6), 200, 20)
    both = read_rows(write_rows(tmp_path / "both.arrow", q, a, lab, x, FEATURES, [0, 7 * DAY]))
    alone = both.subset_queries(both.query_cutoffs("test") == 0).thin_negatives(0.3, 42)
    thin = both.thin_negatives(0.3, 42)
    picked = thin.subset_queries(thin.query_cutoffs("test") == 0)
    assert 0 < picked.rows < both.rows / 2
    assert np.array_equal(picked.x, alone.x, equal_nan=True)
    assert np.array_equal(picked.qid, alone.qid) and np.array_equal(picked.y, alone.y)


def test_fit_key_follows_the_rows_not_how_they_are_split(tmp_path: Path) -> None:
    """A week held by another file in another cycle: the same rows in the same order give the
    same key however they are split into parts; other rows, params or trees give another."""
    from .data import read_rows
    from .refit import fit_key
    from .search import Trained

    q, a, lab, x = planted(np.random.default_rng(8), 60, 10)
    d = read_rows(write_rows(tmp_path / "d.arrow", q, a, lab, x, FEATURES, [0]))
    first = np.arange(d.queries) < 25
    split = [d.subset_queries(first), d.subset_queries(~first)]
    t = Trained(None, {"num_leaves": 7}, 30, None, 1)
    assert fit_key(split, t) == fit_key([d], t)
    assert fit_key(split[:1], t) != fit_key([d], t)
    assert fit_key([d], Trained(None, {"num_leaves": 8}, 30, None, 1)) != fit_key([d], t)
    assert fit_key([d], Trained(None, {"num_leaves": 7}, 31, None, 1)) != fit_key([d], t)
    # LightGBM's threads do not change the model: trainers of one and of two share their fits
    assert fit_key([d], Trained(None, {"num_leaves": 7, "num_threads": 1}, 30, None, 1)) == \
        fit_key([d], Trained(None, {"num_leaves": 7, "num_threads": 2}, 30, None, 1))


def test_fit_key_changes_with_the_trainers_code(tmp_path: Path, monkeypatch) -> None:
    """A fit kept by other trainer code (or another LightGBM) is not read back: the key holds their
    digest, which reads every trainer module but the tests."""
    from . import refit
    from .data import read_rows
    from .search import Trained

    q, a, lab, x = planted(np.random.default_rng(9), 30, 10)
    d = read_rows(write_rows(tmp_path / "d.arrow", q, a, lab, x, FEATURES, [0]))
    t = Trained(None, {"num_leaves": 7}, 30, None, 1)
    digest = refit.trainer_digest()
    assert len(digest) == 64 and digest == refit.trainer_digest()
    before = refit.fit_key([d], t)
    monkeypatch.setattr(refit, "trainer_digest", lambda: "another trainer")
    assert refit.fit_key([d], t) != before


def test_fit_cache_reads_a_rolling_fit_asked_again(trained: dict, tmp_path: Path) -> None:
    """--fit-cache: a second run with the same inputs reads its rolling fit from the cache and
    writes the same scores as the first and as a run without the cache; another seed (other
    params) trains anew."""
    later, week1, _ = _later_week(trained, tmp_path, 14)
    cache = tmp_path / "fits"
    flags = ["--negatives", "0.5", "--refit", "--refit-with", str(later), "--rolling",
             str(week1)]

    def scores(name: str, *more: str) -> tuple[bytes, str]:
        proc = _train_again(trained, tmp_path / name, 30, *flags, *more)
        return (tmp_path / name / "rolling_scores.f32").read_bytes(), proc.stderr

    first, err = scores("first", "--fit-cache", str(cache))
    assert "rolling week" in err and "the fit kept from before" not in err
    assert len(list(cache.glob("*.lgb.txt"))) == 1
    again, err = scores("again", "--fit-cache", str(cache))
    assert "the fit kept from before" in err and again == first
    plain, _ = scores("plain")
    assert plain == first
    other, err = scores("other", "--fit-cache", str(cache), "--seed", "7")
    assert "the fit kept from before" not in err and other != first
    assert len(list(cache.glob("*.lgb.txt"))) == 2


def _tree_text(model_txt: Path) -> str:
    """A LightGBM model file without its parameters block (which names `num_threads`)."""
    text = model_txt.read_text()
    start, end = text.find("\nparameters:\n"), text.find("\nend of parameters\n")
    return text if start < 0 else text[:start] + text[end + len("\nend of parameters\n"):]


@pytest.mark.parametrize("path", ["refit", "search"])
def test_threads_do_not_change_the_model(trained: dict, tmp_path: Path, path: str) -> None:
    """--threads 1 and 2 train the same trees (deterministic, force_col_wise), the refit with a
    blend and rolling fits as the searched model with early stopping: a backtest runs trainers of
    one thread side by side and ships what one trainer of two would."""
    later, week1, _ = _later_week(trained, tmp_path, 15)
    flags = ["--refit", "--refit-with", str(later), "--rolling", str(week1), "--blend", "0.6"] \
        if path == "refit" else ["--min-rounds", "10", "--num-boost-round", "200"]
    _train_again(trained, tmp_path / "one", 40, *flags, "--threads", "1")
    _train_again(trained, tmp_path / "two", 40, *flags, "--threads", "2")
    one, two = (_tree_text(tmp_path / n / "model.lgb.txt") for n in ("one", "two"))
    assert one == two and "Tree=0" in one
    if path == "refit":
        scores = [(tmp_path / n / "rolling_scores.f32").read_bytes() for n in ("one", "two")]
        assert scores[0] == scores[1]
    assert json.loads((tmp_path / "one" / "model.json").read_text())["params"]["num_threads"] == 1


def test_rolling_fits_at_once_score_as_one_after_another(trained: dict, tmp_path: Path) -> None:
    """--threads 2 trains the rolling fits two at a time, one LightGBM thread each (the production
    cycle's trainer), and writes the scores that --threads 1 writes fitting one after another."""
    later, weeks = _later_weeks(trained, tmp_path, 17)
    flags = ["--refit", "--refit-with", str(later), "--rolling", ",".join(map(str, weeks))]
    one = _train_again(trained, tmp_path / "one", 40, *flags, "--threads", "1")
    two = _train_again(trained, tmp_path / "two", 40, *flags, "--threads", "2")
    assert "at a time" not in one.stderr
    assert "rolling fits: 2 at a time, 1 thread(s) each" in two.stderr
    assert two.stderr.count("rolling week") == 3
    got = [(tmp_path / n / "rolling_scores.f32").read_bytes() for n in ("one", "two")]
    assert got[0] == got[1] and np.isfinite(np.frombuffer(got[0], "<f4")).all()


def test_rolling_fits_at_once_are_in_lightgbm_together(trained: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With threads 2 the first two rolling fits are training at the same time, one LightGBM
    thread each: both must reach a barrier before either trains (it breaks after 30 s, failing
    the test, if the fits ran one after another); the scores are those of one fit at a time."""
    import threading

    from . import refit
    from .data import read_rows
    from .search import unsearched

    later, weeks = _later_weeks(trained, tmp_path, 18)
    d = trained["dir"]
    tr, va, extra = (read_rows(p) for p in (d / "train.arrow", d / "valid.arrow", later))
    fixed = unsearched(seed=42, rounds=40, threads=2)

    def scores(threads: int) -> bytes:
        got = refit.rolling_scores(tr, va, [extra], fixed, weeks, None, lambda r: r,
                                   threads=threads)
        return got.astype("<f4").tobytes()

    one_by_one = scores(1)
    barrier, lock = threading.Barrier(2, timeout=30), threading.Lock()
    seen: list[int] = []
    real = refit.train_on

    def train_on(parts, t, dask=None):  # noqa: ANN001, ANN202 (refit.train_on's own)
        with lock:
            seen.append(t.params["num_threads"])
            first_two = len(seen) <= 2
        if first_two:
            barrier.wait()
        return real(parts, t, dask)

    monkeypatch.setattr(refit, "train_on", train_on)
    assert scores(2) == one_by_one
    assert seen == [1, 1, 1]


def test_trainers_side_by_side_train_each_kept_fit_once(trained: dict, tmp_path: Path) -> None:
    """Two trainers started together on the same rolling weeks with one --fit-cache: every fit is
    trained by one of them and read back by the other (a lock per fit), and both write the scores
    a trainer without the cache writes."""
    later, weeks = _later_weeks(trained, tmp_path, 16)
    d = trained["dir"]
    flags = ["--trials", "1", "--num-boost-round", "60", "--min-rounds", "60", "--refit",
             "--refit-with", str(later), "--rolling", ",".join(map(str, weeks)), "--threads", "1"]

    def start(name: str, *more: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*TRAINER, "--rows", str(d / "train.arrow"), "--valid", str(d / "valid.arrow"),
             "--out", str(tmp_path / name), *flags, *more],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV, cwd=ROOT,
        )

    cache = str(tmp_path / "fits")
    procs = [start(n, "--fit-cache", cache) for n in ("a", "b")]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        errs.append(err)
    trained_lines = sum(e.count("rolling week") - e.count("the fit kept from before") for e in errs)
    assert trained_lines == 3 and sum(e.count("the fit kept from before") for e in errs) == 3
    assert len(list((tmp_path / "fits").glob("*.lgb.txt"))) == 3
    plain = start("plain")
    _, err = plain.communicate(timeout=120)
    assert plain.returncode == 0, err
    want = (tmp_path / "plain" / "rolling_scores.f32").read_bytes()
    for n in ("a", "b"):
        assert (tmp_path / n / "rolling_scores.f32").read_bytes() == want


def test_a_fit_locked_by_another_trainer_is_left_or_waited_for(tmp_path: Path) -> None:
    """cached_fit: while another process holds a fit's lock, `wait=False` gives None; once it is
    released, the fit is trained and kept."""
    import fcntl

    from .data import read_rows
    from .refit import cached_fit, fit_key
    from .search import Trained, base_params

    q, a, lab, x = planted(np.random.default_rng(17), 60, 10)
    d = read_rows(write_rows(tmp_path / "d.arrow", q, a, lab, x, FEATURES, [0]))
    t = Trained(None, {**base_params(1, 1), "num_leaves": 7, "min_data_in_leaf": 5}, 5, None, 1)
    cache = tmp_path / "fits"
    cache.mkdir()
    key = fit_key([d], t)
    holder = subprocess.Popen(
        ["python3", "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a'); "
         "fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(cache / f"{key}.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert cached_fit([d], t, None, cache, wait=False) is None
        assert not (cache / f"{key}.lgb.txt").exists()
    finally:
        holder.kill()
        holder.wait()
    got = cached_fit([d], t, None, cache, wait=False)
    assert got is not None and got[1] is False and (cache / f"{key}.lgb.txt").exists()
    with open(cache / f"{key}.lock", "a") as f:  # released after the fit
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_thin_negatives_keeps_every_positive_and_the_share_of_the_rest(tmp_path: Path) -> None:
    from .data import read_rows

    rng = np.random.default_rng(5)
    q, a, lab, x = planted(rng, 400, 25, no_positive=40)
    data = read_rows(write_rows(tmp_path / "t.arrow", q, a, lab, x, FEATURES, [0]))
    assert data.thin_negatives(1.0, 42) is data
    thin = data.thin_negatives(0.3, 42)
    assert int((thin.y > 0).sum()) == int((lab > 0).sum())  # every positive
    negatives = int((lab == 0).sum())
    kept = int((thin.y == 0).sum())
    assert abs(kept - 0.3 * negatives) < 4 * np.sqrt(negatives * 0.3 * 0.7)
    # whole queries, in order, bounds matching the rows; no empty query
    assert np.array_equal(np.diff(thin.bounds) > 0, np.ones(thin.queries, dtype=bool))
    assert np.array_equal(thin.qid[thin.bounds[:-1]], np.unique(thin.qid))
    assert thin.bounds[-1] == thin.rows == len(thin.items) == len(thin.x)
    # seeded: the same rows again, other rows with another seed
    again = data.thin_negatives(0.3, 42)
    assert np.array_equal(again.x, thin.x, equal_nan=True) and np.array_equal(again.qid, thin.qid)
    assert not np.array_equal(data.thin_negatives(0.3, 43).qid, thin.qid)


def test_small_data_keeps_every_row_and_the_small_trees(tmp_path: Path, capsys) -> None:
    """--negatives and --large-trees apply from --large-from training queries with a purchase on:
    below, every row and the default trial's small trees."""
    rng = np.random.default_rng(2)
    tr = write_rows(tmp_path / "t.arrow", *planted(rng, 40, 10), FEATURES, [0])
    va = write_rows(tmp_path / "v.arrow", *planted(rng, 20, 10, qid0=100), FEATURES, [7 * DAY])
    for start, share, leaves in ((41, 1, 7), (40, 0.5, 5)):
        out = tmp_path / f"out-{start}"
        assert cli.main(["--rows", str(tr), "--valid", str(va), "--out", str(out), "--trials", "1",
                         "--num-boost-round", "5", "--negatives", "0.5", "--large-trees", "5,10",
                         "--large-from", str(start)]) == 0
        meta = json.loads((out / "model.json").read_text())
        assert meta["params"]["negative_share"] == share
        assert (meta["metrics"]["train_rows"] == 400) == (share == 1)
        trees = (meta["params"]["num_leaves"], meta["params"]["min_data_in_leaf"])
        assert trees == ((7, 100) if share == 1 else (5, 10))
    err = capsys.readouterr().err
    assert ("small data (40 training queries with a purchase, large from 41): every row, "
            "the small trees") in err
    assert ("large data (40 training queries with a purchase, large from 40): 0.5 of the "
            "negatives, trees of 5 leaves, >= 10 rows each") in err
    assert "training rows: every purchase and 0.5 of the other candidates (40 queries" in err


def test_large_trees_are_leaves_and_rows() -> None:
    base = ["--rows", "a", "--valid", "b", "--out", "c"]
    assert cli.parse_args([*base, "--large-trees", "31,50"]).large_trees == (31, 50)
    assert cli.parse_args(base).large_trees is None
    for bad in ("31", "31,50,2", "1,50", "31,0", "a,b"):
        with pytest.raises(SystemExit):
            cli.parse_args([*base, "--large-trees", bad])
    with pytest.raises(SystemExit):
        cli.parse_args([*base, "--large-from", "-1"])


def test_negatives_must_be_a_share() -> None:
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(SystemExit):
            cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--negatives", bad])


def test_refit_with_needs_refit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--refit-with", "d"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--rows", "a", "--valid", "b", "--out", "c", "--history", "d"])


def check(out: Path, valid: Path, onnx_path: Path | None = None) -> int:
    return cli.main(["--check-parity", str(onnx_path or out / "model.onnx"), "--meta",
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
    code = cli.main(["--check-parity", str(bad), "--meta", str(out / "model.json"), "--valid",
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
    code = cli.main(["--check-parity", str(bad), "--meta", str(out / "model.json"), "--valid",
                       str(trained["dir"] / "valid.arrow"), "--booster",
                       str(out / "model.lgb.txt")])
    assert code != 0
    assert "parity check failed" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Clear errors


def run_main(tmp_path: Path, train_file: Path, valid_file: Path) -> int:
    return cli.main(["--rows", str(train_file), "--valid", str(valid_file), "--out",
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


def test_first_trial_takes_the_larger_trees_it_is_given() -> None:
    from .search import DEFAULT_TRIAL, default_trial

    assert default_trial() == DEFAULT_TRIAL
    large = default_trial((31, 50))
    assert (large["num_leaves"], large["min_data_in_leaf"]) == (31, 50)
    assert {k: v for k, v in large.items() if k not in ("num_leaves", "min_data_in_leaf")} == {
        k: v for k, v in DEFAULT_TRIAL.items() if k not in ("num_leaves", "min_data_in_leaf")
    }


def _trees(booster: object, rounds: int) -> str:
    """The tree section of a booster's first `rounds` trees (no parameters, no feature infos)."""
    text = booster.model_to_string(num_iteration=rounds)  # type: ignore[attr-defined]
    return text[text.index("Tree=0") : text.index("end of trees")]


@pytest.mark.parametrize("floor", [0, 60, 150])
def test_stopping_with_floor_keeps_what_a_second_training_would(floor: int) -> None:
    import lightgbm as lgb

    from .search import DEFAULT_TRIAL, base_params, stopping_with_floor

    rng = np.random.default_rng(3)
    q, _, lab, x = planted(rng, 200, 15)
    vq, _, vl, vx = planted(rng, 60, 15)
    # noisy labels, so early stopping stops early
    lab = np.where(rng.random(len(lab)) < 0.5, rng.integers(0, 2, size=len(lab)), lab)
    dtrain = lgb.Dataset(x, lab, group=np.bincount(q), free_raw_data=False,
                         params={"feature_pre_filter": False, "verbose": -1})
    dvalid = lgb.Dataset(vx, vl, group=np.bincount(vq), reference=dtrain)
    params = {**base_params(5), **DEFAULT_TRIAL}

    def fit(callbacks: list, rounds: int = 200) -> lgb.Booster:
        return lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid],
                         valid_names=["valid"], callbacks=callbacks)

    plain = fit([lgb.early_stopping(10, verbose=False)])
    stopped_at = plain.best_iteration
    assert stopped_at < 60  # the data makes it stop before the floors tested
    floored = fit([stopping_with_floor(10, floor)])
    kept = max(stopped_at, floor)
    assert floored.best_iteration == kept
    if floor <= stopped_at:
        assert floored.current_iteration() == plain.current_iteration()
    else:
        assert floored.current_iteration() == floor  # trained to the floor, no further
    # the trees a second training of `kept` rounds grows, without validation rows
    again = lgb.train(params, dtrain, num_boost_round=kept)
    assert _trees(floored, kept) == _trees(again, kept)

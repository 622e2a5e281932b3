"""The parity check: before anything is written, ONNX Runtime's scores are compared with
`booster.predict` on the validation rows, one all-NaN row, up to 2000 validation rows with random
NaN masks, rows that reach every split with its feature on the threshold's float32 floor and the
float32 values either side, and every feature at values in and around the zero band
(`parity_check_rows`). A max absolute difference above 1e-4 refuses that trial's model ("parity
check failed: ... (rows above: ...)"); the best trial that passes is shipped, and when none
passes, no model is written. `--check-parity` runs the same check on an exported model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import EXIT_PARITY, TrainError
from .export import ZERO_THRESHOLD, down32, export_onnx, floor32, lightgbm_value, up32
from .search import Trained

PARITY_TOLERANCE = 1e-4

# Every parity check scores these rows besides the validation rows (see `parity_check_rows`).
PARITY_NAN_ROWS = 2000
ZERO_BAND_VALUES = (
    0.0, -0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, up32(ZERO_THRESHOLD), down32(-ZERO_THRESHOLD),
    ZERO_THRESHOLD / 2, -ZERO_THRESHOLD / 2, 1e-40, -1e-40,
)


@dataclass
class ParityResult:
    max_abs_diff: float
    rows: int
    row_sets: dict[str, int]  # rows scored per kind (see `parity_check_rows`)

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.row_sets.items())


def export_checked(trained: Trained, n_features: int, version: str, x: np.ndarray) -> tuple[
        bytes, str, str, Any]:
    """ONNX bytes, input and output names and the parity check of a booster; TrainError if off."""
    onnx_bytes, input_name, output_name = export_onnx(trained.booster, n_features, version)
    check = parity(onnx_bytes, input_name, output_name, trained.booster, x)
    return onnx_bytes, input_name, output_name, check


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
        for c in (floor32(hi), up32(floor32(lo)), 0.0):
            if np.isfinite(c) and lo < lightgbm_value(c) <= hi:
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
            probes = {down32(fl), fl, up32(fl)}
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

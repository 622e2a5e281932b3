"""FIXTURE ranker: a LightGBM-shaped ONNX model for tests and benchmarks, not a trained model.

Its metadata says `kind: "fixture"`, and serving refuses such a model unless the instance was
started with SERVING_ALLOW_FIXTURE_MODEL=true (serving/live-model.ts): users are never ranked by
these random trees.

Builds a `TreeEnsembleRegressor` (domain `ai.onnx.ml`) the way onnxmltools exports a LightGBM
LambdaRank booster: one float input `input` [N, F], one output `variable` [N, 1], SUM of the
trees' leaf values, BRANCH_LEQ splits (`x <= threshold` takes the true branch) and NaN routed to
a defined branch per split (`nodes_missing_value_tracks_true`). The trees are complete binary
trees of `--depth` levels whose thresholds are drawn deterministically from `--seed` inside
plausible per-feature ranges, and whose leaf values (small, like a shrunk booster's) follow a
per-feature direction: higher popularity / affinity / sales push the score up, a long time since
the article last sold pushes it down. The same arguments give byte-identical `model.onnx`.

    .venv/bin/python models/fixture_model.py --out DIR --features-json names.json \
        [--trees 500] [--depth 6] [--seed 7] [--version NAME]

Writes DIR/model.onnx and DIR/model.json (metadata read by models/model-meta.ts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3  # TreeEnsembleRegressor is deprecated from ai.onnx.ml 5; 3 is what ORT runs natively.
ONNX_OPSET = 17
IR_VERSION = 9  # readable by every onnxruntime since 1.15
INPUT_NAME = "input"
OUTPUT_NAME = "variable"
LEAF_SCALE = 0.02  # leaf values stay small, like a booster's with a small learning rate


@dataclass(frozen=True)
class FeatureShape:
    """Where a feature's thresholds fall and which way it pushes the score."""

    low: float
    high: float
    log: bool  # draw thresholds uniformly in log space
    direction: float  # > 0: higher value -> higher score; < 0: lower; 0: no tendency


def feature_shape(name: str) -> FeatureShape:
    """Heuristics by name, so any feature list gets plausible splits."""
    n = name.lower()
    if "pop" in n:
        return FeatureShape(0.01, 200.0, True, 1.0)
    if n.startswith("p_aff") or "aff" in n:
        return FeatureShape(0.0, 1.0, False, 1.0)
    if "share" in n:
        return FeatureShape(0.0, 1.0, False, 0.0)
    if "days_since_last" in n and n.startswith("a_"):
        return FeatureShape(0.5, 730.0, True, -1.0)
    if "days_since_first" in n and n.startswith("a_"):
        return FeatureShape(0.5, 730.0, True, -0.3)
    if "days" in n:
        return FeatureShape(0.5, 730.0, True, 0.0)
    if "price_ratio" in n:
        return FeatureShape(0.25, 4.0, True, -0.5)
    if "price" in n:
        return FeatureShape(0.005, 0.2, True, 0.0)
    if "spend" in n:
        return FeatureShape(0.01, 50.0, True, 0.0)
    if "age" in n:
        return FeatureShape(16.0, 80.0, False, 0.0)
    if n.startswith("a_") and ("purchases" in n or "buyers" in n):
        return FeatureShape(1.0, 2000.0, True, 1.0)
    if "bought" in n:
        return FeatureShape(1.0, 10.0, True, 0.5)
    if "purchases" in n or "units" in n or "buyers" in n:
        return FeatureShape(1.0, 2000.0, True, 0.0)
    return FeatureShape(0.0, 1.0, False, 0.0)


@dataclass
class Ensemble:
    """The flat node arrays of TreeEnsembleRegressor."""

    nodes_treeids: list[int]
    nodes_nodeids: list[int]
    nodes_featureids: list[int]
    nodes_values: list[float]
    nodes_modes: list[str]
    nodes_truenodeids: list[int]
    nodes_falsenodeids: list[int]
    nodes_missing_value_tracks_true: list[int]
    target_treeids: list[int]
    target_nodeids: list[int]
    target_weights: list[float]


def build_ensemble(features: list[str], trees: int, depth: int, seed: int) -> Ensemble:
    rng = np.random.default_rng(seed)
    shapes = [feature_shape(f) for f in features]
    # Features with a direction are split on more often, as a trained ranker would.
    weights = np.array([3.0 if s.direction != 0 else 1.0 for s in shapes])
    weights /= weights.sum()
    e = Ensemble([], [], [], [], [], [], [], [], [], [], [])
    n_internal = 2**depth - 1

    def to_space(s: FeatureShape, v: float) -> float:
        return math.log(v) if s.log else v

    def from_space(s: FeatureShape, v: float) -> float:
        return math.exp(v) if s.log else v

    for tree in range(trees):
        # Heap layout: node i has children 2i+1 (true: x <= t, or missing when tracked) and 2i+2.
        # Each path keeps the interval its earlier splits left per feature, so a later split on
        # the same feature falls inside it (as in a real tree), and the leaf's value is the sum
        # of the directions the path took.
        stack: list[tuple[int, dict[int, tuple[float, float]], float]] = [(0, {}, 0.0)]
        while stack:
            node, bounds, push = stack.pop()
            if node >= n_internal:
                value = LEAF_SCALE * (push / depth + rng.normal(0.0, 0.25))
                e.nodes_treeids.append(tree)
                e.nodes_nodeids.append(node)
                e.nodes_featureids.append(0)
                e.nodes_values.append(0.0)
                e.nodes_modes.append("LEAF")
                e.nodes_truenodeids.append(0)
                e.nodes_falsenodeids.append(0)
                e.nodes_missing_value_tracks_true.append(0)
                e.target_treeids.append(tree)
                e.target_nodeids.append(node)
                e.target_weights.append(float(np.float32(value)))
                continue
            f = int(rng.choice(len(features), p=weights))
            s = shapes[f]
            lo, hi = bounds.get(f, (to_space(s, s.low), to_space(s, s.high)))
            cut = lo + (hi - lo) * float(rng.uniform(0.2, 0.8))
            threshold = float(np.float32(from_space(s, cut)))
            if s.direction > 0:
                missing_true = 1  # missing ~ low value (never sold, no affinity)
            elif s.direction < 0:
                missing_true = 0  # missing days-since ~ very long ago (high value)
            else:
                missing_true = int(rng.integers(0, 2))
            e.nodes_treeids.append(tree)
            e.nodes_nodeids.append(node)
            e.nodes_featureids.append(f)
            e.nodes_values.append(threshold)
            e.nodes_modes.append("BRANCH_LEQ")
            e.nodes_truenodeids.append(2 * node + 1)
            e.nodes_falsenodeids.append(2 * node + 2)
            e.nodes_missing_value_tracks_true.append(missing_true)
            stack.append((2 * node + 2, {**bounds, f: (cut, hi)}, push + s.direction))
            stack.append((2 * node + 1, {**bounds, f: (lo, cut)}, push - s.direction))
    return e


def build_model(features: list[str], trees: int, depth: int, seed: int) -> onnx.ModelProto:
    e = build_ensemble(features, trees, depth, seed)
    node = helper.make_node(
        "TreeEnsembleRegressor",
        inputs=[INPUT_NAME],
        outputs=[OUTPUT_NAME],
        name="LightGbmLambdaRankFixture",
        domain=ML_DOMAIN,
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values=[0.0],
        nodes_treeids=e.nodes_treeids,
        nodes_nodeids=e.nodes_nodeids,
        nodes_featureids=e.nodes_featureids,
        nodes_values=e.nodes_values,
        nodes_modes=e.nodes_modes,
        nodes_truenodeids=e.nodes_truenodeids,
        nodes_falsenodeids=e.nodes_falsenodeids,
        nodes_missing_value_tracks_true=e.nodes_missing_value_tracks_true,
        nodes_hitrates=[1.0] * len(e.nodes_treeids),
        target_ids=[0] * len(e.target_treeids),
        target_treeids=e.target_treeids,
        target_nodeids=e.target_nodeids,
        target_weights=e.target_weights,
    )
    graph = helper.make_graph(
        [node],
        "fixture_lambdarank",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, len(features)])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        producer_name="fixture_model.py",
        producer_version="1",
        doc_string=f"FIXTURE ranker (not trained): {trees} trees, depth {depth}, seed {seed}",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def read_features(path: Path) -> list[str]:
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"fixture_model: cannot read --features-json {path}: {err}") from err
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise SystemExit(f"fixture_model: {path} must hold a non-empty JSON array of names")
    if len(set(names)) != len(names):
        raise SystemExit(f"fixture_model: {path} lists a feature twice")
    return names


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Build the FIXTURE LightGBM-shaped ONNX ranker.")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--features-json", required=True, type=Path, help="JSON array of names")
    p.add_argument("--trees", type=int, default=500)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--version", default=None, help="default: fixture-<seed>-<trees>")
    args = p.parse_args(argv)
    if args.trees < 1 or not 1 <= args.depth <= 16:
        p.error("--trees must be >= 1 and --depth in 1..16")

    started = time.perf_counter()
    features = read_features(args.features_json)
    model = build_model(features, args.trees, args.depth, args.seed)
    data = model.SerializeToString()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").write_bytes(data)
    meta = {
        "version": args.version or f"fixture-{args.seed}-{args.trees}",
        "kind": "fixture",
        "objective": "lambdarank",
        "features": features,
        "trees": args.trees,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        ),
        "onnx_input": INPUT_NAME,
        "onnx_output": OUTPUT_NAME,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "params": {"depth": args.depth, "seed": args.seed},
    }
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    elapsed = time.perf_counter() - started
    print(
        json.dumps({"out": str(args.out), "bytes": len(data), "seconds": round(elapsed, 3)}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

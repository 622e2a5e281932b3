"""The ONNX export: onnxmltools `convert_lightgbm`, input `input` float [N, F]; the LambdaRank
export is one `TreeEnsembleRegressor` (ai.onnx.ml) + `Identity`, output `variable` float [N, 1]
(the names are read from the graph and written to model.json); opsets "" 8 and ai.onnx.ml 1, IR 4,
which onnxruntime-node 1.30 loads.

The converter rounds thresholds to the nearest float32 and takes the NaN direction from
default_left; `align_splits` then sets every split, paired with the booster's own node by walking
both trees, so that ONNX takes LightGBM's branch for every float32 input (`onnx_split`: the largest
float32 <= the threshold; LightGBM's zero band, |x| <= 1e-35 read as 0; its 1e300 stand-in for an
infinite threshold; NaN read as 0.0 where the feature had no NaN in training, missing_type None).
A model with missing_type Zero (zero_as_missing) is refused. parity.py checks the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import TrainError

INPUT_NAME = "input"

# LightGBM's kZeroThreshold, declared `const double kZeroThreshold = 1e-35f` (a float widened to
# double). Its predictor reads a value with |x| <= this as 0.0 (c_api.cpp, RowPairFunctionFrom-
# DenseMatric keeps only |x| > kZeroThreshold or NaN), and its bins put split thresholds at
# +-kZeroThreshold around the zero bin.
ZERO_THRESHOLD = float(np.float32(1e-35))
# LightGBM stores an infinite threshold as +-1e300 (Common::AvoidInf).
AVOID_INF = 1e300


def export_onnx(booster: Any, n_features: int, version: str) -> tuple[bytes, str, str]:
    """ONNX bytes and the graph's (input, output) names; every split as the booster takes it."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = convert_lightgbm(
        booster,
        name="lightgbm_lambdarank",
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise TrainError(
            f"unexpected ONNX export: inputs {[i.name for i in model.graph.input]}, "
            f"outputs {[o.name for o in model.graph.output]} (expected one of each)"
        )
    align_splits(model, booster)
    model.doc_string = f"LightGBM LambdaRank ranker {version}"
    entry = model.metadata_props.add()
    entry.key, entry.value = "version", version
    return model.SerializeToString(), model.graph.input[0].name, model.graph.output[0].name


# ---- float32 neighbours and LightGBM's reading of an input value


def up32(v: float) -> float:
    """The next float32 above float32 v (inf above the largest)."""
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def down32(v: float) -> float:
    """The next float32 below float32 v (-inf below the lowest)."""
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def floor32(t: float) -> float:
    """The largest float32 <= the double t (float32 max for t beyond it)."""
    with np.errstate(over="ignore"):
        f = np.float32(t)
    return down32(float(f)) if float(f) > t else float(f)


def lightgbm_value(x: float) -> float:
    """What LightGBM's predictor compares for a non-NaN input value (the zero band read as 0)."""
    return 0.0 if abs(x) <= ZERO_THRESHOLD else x


# ---- one split


def onnx_split(threshold: float, missing_type: str, default_left: bool) -> tuple[float, bool]:
    """The float32 threshold t' and nodes_missing_value_tracks_true with which ONNX's test
    (`x <= t'`, or NaN with tracks_true) sends every float32 x, NaN included, to the branch
    LightGBM takes.

    LightGBM 4.7 (include/LightGBM/tree.h, NumericalDecision), after its predictor read a value
    with |x| <= kZeroThreshold as 0.0: missing_type NaN sends NaN to the default_left side;
    missing_type None turns NaN into 0.0 and compares it (default_left plays no part); missing_type
    Zero sends the zero band to the default side. Then left iff x <= threshold, a double. The
    converter (onnxmltools 1.16) stores round-to-nearest float32 thresholds, and sets tracks_true
    from default_left, also for missing_type None, where LightGBM ignores it.

    For float32 x, `x <= t` holds exactly when `x <= floor32(t)`; with the zero band and infinities:
      |t| >= 1e300: LightGBM's stand-in for an infinite threshold (Common::AvoidInf; a split of
        the numbers from NaN), which sends +-inf inputs with the numbers (measured: +inf goes left
        at 1e300, right at a finite threshold) -> +-inf;
      t >= kZeroThreshold or t < -kZeroThreshold: the band sits wholly on one side -> floor32(t);
      -kZeroThreshold <= t < 0: the band (read as 0) goes right -> left iff x < -kZeroThreshold;
      0 <= t < kZeroThreshold: the band goes left -> left iff x <= kZeroThreshold.
    NaN: missing_type NaN -> default_left; None -> where 0.0 goes, i.e. 0 <= t.
    Missing_type Zero (only with zero_as_missing=true, which the trainer never sets) cannot be
    one ONNX test (the band would need its own branch) and is refused.
    """
    if missing_type == "Zero":
        raise TrainError(
            "ONNX export: a split has missing_type Zero (zero_as_missing=true), which one ONNX "
            "TreeEnsemble test cannot express; train without zero_as_missing"
        )
    if missing_type not in ("None", "NaN"):
        raise TrainError(f"ONNX export: unknown LightGBM missing_type {missing_type!r}")
    if abs(threshold) >= AVOID_INF:
        t32 = math.copysign(math.inf, threshold)
    elif threshold >= ZERO_THRESHOLD or threshold < -ZERO_THRESHOLD:
        t32 = floor32(threshold)
    elif threshold < 0:
        t32 = down32(-ZERO_THRESHOLD)
    else:
        t32 = ZERO_THRESHOLD
    nan_left = default_left if missing_type == "NaN" else 0.0 <= threshold
    return t32, bool(nan_left)


# ---- every split of the exported ensemble


@dataclass
class _Nodes:
    """The node attributes of the exported TreeEnsembleRegressor, one entry per node (`values`
    and `tracks` are the graph's own lists: writing them changes the model)."""

    tree_ids: Any
    node_ids: Any
    features: Any
    true_ids: Any
    false_ids: Any
    modes: list[str]
    values: Any
    tracks: Any
    index: dict[tuple[int, int], int]  # (tree, node id) -> entry
    by_tree: dict[int, list[int]]  # tree -> its entries


def align_splits(model: Any, booster: Any) -> int:
    """Give every split of the exported TreeEnsembleRegressor LightGBM's own branch for every
    float32 input (`onnx_split`): threshold and NaN direction. Returns the splits changed.

    Nodes are paired by walking each ONNX tree (true/false children) and the booster's dumped tree
    (left/right children) together from the root, not by node numbering (onnxmltools numbers a
    node's two children when it visits the node, not in preorder). Any disagreement of shape,
    split feature, comparison or threshold (the converter's must be the float32 of the booster's)
    means another converter layout: the export fails rather than guessing.
    """
    nodes = _ensemble_nodes(model)
    n = len(nodes.node_ids)
    changed = visited = 0
    trees = booster.dump_model()["tree_info"]
    for tree, info in enumerate(trees):
        tree_changed, tree_visited = _align_tree(nodes, tree, info)
        changed += tree_changed
        visited += tree_visited
    if visited != n:
        raise _mismatch(len(trees), f"{n} ONNX nodes, {visited} booster nodes")
    return changed


def _ensemble_nodes(model: Any) -> _Nodes:
    """The one TreeEnsembleRegressor's nodes, with nodes_missing_value_tracks_true added when the
    converter left it out."""
    import onnx

    ensembles = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    if len(ensembles) != 1:
        raise TrainError(f"unexpected ONNX export: {len(ensembles)} TreeEnsembleRegressor nodes")
    node = ensembles[0]
    attrs = {a.name: a for a in node.attribute}
    n = len(attrs["nodes_nodeids"].ints)
    if "nodes_missing_value_tracks_true" not in attrs:
        node.attribute.append(
            onnx.helper.make_attribute("nodes_missing_value_tracks_true", [0] * n)
        )
        attrs["nodes_missing_value_tracks_true"] = node.attribute[-1]
    tree_ids = attrs["nodes_treeids"].ints
    node_ids = attrs["nodes_nodeids"].ints
    by_tree: dict[int, list[int]] = {}
    for k, t in enumerate(tree_ids):
        by_tree.setdefault(int(t), []).append(k)
    return _Nodes(
        tree_ids=tree_ids,
        node_ids=node_ids,
        features=attrs["nodes_featureids"].ints,
        true_ids=attrs["nodes_truenodeids"].ints,
        false_ids=attrs["nodes_falsenodeids"].ints,
        modes=[m.decode() if isinstance(m, bytes) else m for m in attrs["nodes_modes"].strings],
        values=attrs["nodes_values"].floats,
        tracks=attrs["nodes_missing_value_tracks_true"].ints,
        index={(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree_ids, node_ids))},
        by_tree=by_tree,
    )


def _mismatch(tree: int, why: str) -> TrainError:
    return TrainError(f"ONNX export: tree {tree} does not match the booster's ({why})")


def _align_tree(nodes: _Nodes, tree: int, info: dict[str, Any]) -> tuple[int, int]:
    """Walk ONNX tree `tree` and the booster's (`info`) together from the root, aligning every
    split; returns (splits changed, nodes visited)."""
    mine = nodes.by_tree.get(tree, [])
    children = {
        int(c)
        for k in mine
        if nodes.modes[k] != "LEAF"
        for c in (nodes.true_ids[k], nodes.false_ids[k])
    }
    roots = [k for k in mine if nodes.node_ids[k] not in children]
    if len(roots) != 1:
        raise _mismatch(tree, f"{len(roots)} root nodes")
    changed = visited = 0
    stack = [(info["tree_structure"], roots[0])]
    while stack:
        split, k = stack.pop()
        visited += 1
        if "split_index" not in split:
            if nodes.modes[k] != "LEAF":
                raise _mismatch(
                    tree, f"node {nodes.node_ids[k]} is {nodes.modes[k]}, the booster's a leaf"
                )
            continue
        threshold = float(split["threshold"])
        _check_same_split(nodes, tree, k, split, threshold)
        t32, nan_left = onnx_split(threshold, split["missing_type"], bool(split["default_left"]))
        if float(np.float32(nodes.values[k])) != t32 or bool(nodes.tracks[k]) != nan_left:
            changed += 1
        nodes.values[k] = t32
        nodes.tracks[k] = int(nan_left)
        left = nodes.index.get((tree, int(nodes.true_ids[k])))
        right = nodes.index.get((tree, int(nodes.false_ids[k])))
        if left is None or right is None:
            raise _mismatch(tree, f"node {nodes.node_ids[k]} has a missing child")
        stack.append((split["left_child"], left))
        stack.append((split["right_child"], right))
    return changed, visited


def _check_same_split(
    nodes: _Nodes, tree: int, k: int, split: dict[str, Any], threshold: float
) -> None:
    """The converter's node k is the booster's split: `<=` on the same feature at the float32 of
    its threshold."""
    with np.errstate(over="ignore"):
        same_threshold = np.float32(nodes.values[k]) == np.float32(threshold)
    if (
        split["decision_type"] != "<="
        or nodes.modes[k] != "BRANCH_LEQ"
        or nodes.features[k] != int(split["split_feature"])
        or not same_threshold
    ):
        raise _mismatch(
            tree,
            f"node {nodes.node_ids[k]}: {nodes.modes[k]} f{nodes.features[k]} "
            f"{nodes.values[k]!r} vs "
            f"{split['decision_type']} f{split['split_feature']} {threshold!r}",
        )

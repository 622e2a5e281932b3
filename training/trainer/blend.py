"""The binary blend (`--blend W`): beside each LambdaRank fit, a second booster with the binary
objective on the same rows and parameters, and one model of both tree lists.

LambdaRank learns the order within each customer's candidates; the binary model learns how likely
each candidate is bought at all, across customers. Their errors differ, and a blend of the two
ranks better than either on online-retail-dev (docs/evaluation.md, "The stock columns and the
blend, from a data size").
Both are tree ensembles whose raw scores add, so the blend is one LightGBM model: the LambdaRank
trees, then the binary trees with their leaf values scaled by `W * s_rank / s_binary`, where `s` is
a model's standard deviation of the raw score within a query, averaged over the training queries
(the two scores on one scale, then the binary one weighed `W`). The binary booster grows a third of
the ranking model's trees at three times its learning rate (`SPEEDUP`). The shipped model, its ONNX
export, the parity check and serving see one model of both tree lists; nothing else changes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .common import TrainError

_TREE = re.compile(r"^Tree=\d+\n", re.MULTILINE)
_LEAF_VALUE = re.compile(r"^leaf_value=(.*)$", re.MULTILINE)


# The binary booster's trees are a third of the ranking model's, at three times its learning rate.
# Measured on online-retail-dev's saved rows with the stock columns (docs/evaluation.md, "The stock
# columns built"): 100 trees at 0.09 blend as well as 300 at 0.03 (offline 0.2065 and 0.2059 at
# seeds 42 and 7 against 0.2061 and 0.2063; the backtest 0.20226 against 0.20223), and the blend's
# extra training falls by more than half.
SPEEDUP = 3


def binary_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with the binary objective (the ranking metric's settings dropped) and `SPEEDUP`
    times the learning rate."""
    out = {k: v for k, v in params.items() if k not in ("eval_at", "metric")}
    rate = {"learning_rate": out["learning_rate"] * SPEEDUP} if "learning_rate" in out else {}
    return {**out, **rate, "objective": "binary", "metric": "binary_logloss"}


def binary_rounds(rounds: int) -> int:
    """The binary booster's trees for a ranking model of `rounds` trees: `rounds / SPEEDUP`, at
    least one."""
    return max(1, round(rounds / SPEEDUP))


def within_query_sd(scores: np.ndarray, bounds: np.ndarray) -> float:
    """The standard deviation of `scores` within each query (rows bounds[i]:bounds[i+1]), averaged
    over the queries of two rows or more."""
    sizes = np.diff(bounds)
    keep = sizes > 1
    if not keep.any():
        return 0.0
    starts = bounds[:-1]
    s = scores.astype(np.float64)
    mean = np.add.reduceat(s, starts) / sizes
    dev = s - np.repeat(mean, sizes)
    sd = np.sqrt(np.add.reduceat(dev * dev, starts) / sizes)
    return float(sd[keep].mean())


def blend_scale(rank: Any, binary: Any, x: np.ndarray, bounds: np.ndarray, weight: float) -> float:
    """The factor of the binary trees' leaf values: `weight` times the ratio of the two models'
    within-query spreads of raw score on the rows `x` (queries `bounds`)."""
    s_rank = within_query_sd(rank.predict(x, raw_score=True), bounds)
    s_binary = within_query_sd(binary.predict(x, raw_score=True), bounds)
    # below 1e-9 a spread is float rounding of one score
    if not (s_rank > 1e-9 and s_binary > 1e-9):
        raise TrainError(f"cannot blend: a model scores every candidate of a query alike "
                         f"(within-query spread {s_rank:.3g} ranking, {s_binary:.3g} binary)")
    return weight * s_rank / s_binary


def merge(rank: Any, binary: Any, scale: float) -> Any:
    """One booster holding `rank`'s trees and then `binary`'s with leaf values times `scale`: its
    raw score is rank's plus `scale` times binary's. The header (feature names, objective) is
    `rank`'s; both must be trained on the same features."""
    import lightgbm as lgb

    if rank.num_feature() != binary.num_feature():
        raise TrainError(f"cannot blend: {rank.num_feature()} and {binary.num_feature()} features")
    head, rank_trees = _split(rank.model_to_string())
    _, binary_trees = _split(binary.model_to_string())
    trees = rank_trees + [_scaled(t, scale) for t in binary_trees]
    # tree_sizes lets LightGBM load trees in parallel; without it they load in order
    head = re.sub(r"^tree_sizes=.*\n", "", head, flags=re.MULTILINE)
    body = "".join(f"Tree={i}\n{t}" for i, t in enumerate(trees))
    merged = lgb.Booster(model_str=f"{head}{body}end of trees\n")
    if merged.num_trees() != rank.num_trees() + binary.num_trees():
        raise TrainError(f"cannot blend: the merged model holds {merged.num_trees()} trees, not "
                         f"{rank.num_trees()} + {binary.num_trees()}")
    # saved and read again: the header's tree sizes written for the merged trees
    return lgb.Booster(model_str=merged.model_to_string())


def _split(text: str) -> tuple[str, list[str]]:
    """A model text's header (up to the first tree) and each tree's block without its `Tree=N`."""
    end = text.index("end of trees")
    starts = [m.start() for m in _TREE.finditer(text, 0, end)]
    if not starts:
        raise TrainError("cannot blend: a model without trees")
    bounds = starts + [end]
    trees = [_TREE.sub("", text[a:b], count=1) for a, b in zip(bounds, bounds[1:])]
    return text[: starts[0]], trees


def _scaled(tree: str, scale: float) -> str:
    def line(m: re.Match[str]) -> str:
        return "leaf_value=" + " ".join(repr(float(v) * scale) for v in m.group(1).split())

    out, n = _LEAF_VALUE.subn(line, tree)
    if n != 1:
        raise TrainError(f"cannot blend: a tree with {n} leaf_value lines")
    return out

"""The rows files: Arrow IPC files (file format = Feather v2, or the stream format) written by the
TypeScript row builder (training/rows.ts, `writeRows`): `qid` (int64, one query = one customer x
cutoff; the rows of a query are contiguous), `customer_id`, `article_id`, `cutoff` (int64 ms),
`label` (> 0: bought in the week after the cutoff), then one float32 column per feature. The
schema metadata holds `features` (JSON array of the feature columns, in model input order) and
`cutoffs` (JSON array of ms). Missing values are NaN (Arrow nulls are read as NaN too).

`read_rows` checks a file and gives a `RankData`: the feature matrix, the labels, the query bounds
and an article code per row (equal code = same article within the file, for MAP@12's "an article
counts once").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .common import TrainError

FIXED_COLUMNS = ("qid", "customer_id", "article_id", "cutoff", "label")


def query_bounds(qid: np.ndarray) -> np.ndarray:
    """Start offsets of each run of equal qids, plus len(qid) at the end."""
    n = len(qid)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(qid[1:] != qid[:-1]) + 1
    return np.concatenate(([0], change, [n])).astype(np.int64)


@dataclass
class RankData:
    path: Path
    features: list[str]
    cutoffs: list[int]
    x: np.ndarray  # float32 [N, F]
    y: np.ndarray  # int32 [N]
    qid: np.ndarray  # int64 [N]
    items: np.ndarray  # int64 [N], article codes (equal code = same article within the file)
    bounds: np.ndarray  # int64 [Q + 1]
    row_cutoff: np.ndarray | None = None  # int64 [N], each row's cutoff (column `cutoff`)

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def queries(self) -> int:
        return len(self.bounds) - 1

    def positives_per_query(self) -> np.ndarray:
        if self.rows == 0:
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat((self.y > 0).astype(np.int64), self.bounds[:-1])

    def subset_queries(self, keep: np.ndarray) -> RankData:
        sizes = np.diff(self.bounds)
        return self._rows(np.repeat(keep, sizes), sizes[keep])

    def thin_negatives(self, share: float, seed: int) -> RankData:
        """Every positive row and each other row with probability `share`; queries left without a
        row are dropped. `share` 1 returns the data as it is. Seeded per cutoff (by `seed` and
        the cutoff, over that cutoff's rows in file order): a week's rows keep the same rows
        whichever file holds them and whatever other weeks it holds, so a rolling fit of one week
        trains on the same rows in every cycle that fits it (refit.py's fit cache). Without a
        `cutoff` column, one draw over the file."""
        if share >= 1 or self.rows == 0:
            return self
        keep = self.y > 0
        if self.row_cutoff is None:
            keep |= np.random.default_rng(seed).random(self.rows) < share
        else:
            for c in np.unique(self.row_cutoff):
                week = self.row_cutoff == c
                draw = np.random.default_rng([seed, int(c) % 2**64]).random(int(week.sum()))
                keep[week] |= draw < share
        sizes = np.add.reduceat(keep.astype(np.int64), self.bounds[:-1])
        return self._rows(keep, sizes[sizes > 0])

    def _rows(self, mask: np.ndarray, sizes: np.ndarray) -> RankData:
        """The rows of `mask`, whose queries hold `sizes` rows each, in order."""
        return RankData(
            self.path,
            self.features,
            self.cutoffs,
            self.x[mask],
            self.y[mask],
            self.qid[mask],
            self.items[mask],
            np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            None if self.row_cutoff is None else self.row_cutoff[mask],
        )

    def only(self, names: Sequence[str]) -> RankData:
        """The same rows with the feature columns `names`, in that order; TrainError when one is
        missing."""
        if list(names) == self.features:
            return self
        absent = [f for f in names if f not in self.features]
        if absent:
            raise TrainError(f"{self.path}: no column(s) {', '.join(absent)} of the model's features")
        index = {f: j for j, f in enumerate(self.features)}
        return replace(self, features=list(names), x=self.x[:, [index[f] for f in names]])

    def without(self, names: Sequence[str]) -> RankData:
        """The same rows without the feature columns `names` (names it does not hold ignored)."""
        keep = [j for j, f in enumerate(self.features) if f not in names]
        if len(keep) == len(self.features):
            return self
        return replace(self, features=[self.features[j] for j in keep], x=self.x[:, keep])

    def query_cutoffs(self, what: str) -> np.ndarray:
        """The cutoff of each query (its first row's); TrainError without a `cutoff` column."""
        if self.row_cutoff is None:
            raise TrainError(f"{self.path}: no `cutoff` column, needed for {what}")
        return self.row_cutoff[self.bounds[:-1]]


def read_rows(path: Path, expect_features: Sequence[str] | None = None) -> RankData:
    """Read and check one rows file (see the module doc); features in model order."""
    table = _read_table(path)
    names = table.column_names
    missing = [c for c in ("qid", "article_id", "label") if c not in names]
    if missing:
        raise TrainError(f"{path}: missing column(s) {', '.join(missing)} (columns: {names})")
    features = _feature_names(table, path, expect_features)
    x = _feature_matrix(table, features, path)
    qid, y = _qid_and_labels(table, path)
    items = _article_codes(table)
    bounds = query_bounds(qid)
    if len(np.unique(qid[bounds[:-1]])) != len(bounds) - 1:
        raise TrainError(f"{path}: the rows of a qid are not contiguous (sort the rows by qid)")
    cutoffs, row_cutoff = _cutoffs(table, path)
    return RankData(path, list(features), [int(c) for c in cutoffs], x, y, qid, items, bounds,
                    row_cutoff)


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if not path.is_file():
        raise TrainError(f"missing file: {path} does not exist (or is not a file)")
    try:
        with pa.OSFile(str(path), "rb") as src:
            try:
                return ipc.open_file(src).read_all()
            except pa.ArrowInvalid:
                src.seek(0)
                return ipc.open_stream(src).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise TrainError(f"{path}: not an Arrow IPC file or stream: {err}") from err


def _meta_json(table: Any, key: str, path: Path) -> Any:
    meta = table.schema.metadata or {}
    raw = meta.get(key.encode())
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as err:
        raise TrainError(f"{path}: schema metadata '{key}' is not JSON: {err}") from err


def _feature_names(table: Any, path: Path, expect_features: Sequence[str] | None) -> Any:
    """The metadata's `features` (else every numeric column after the fixed ones), checked."""
    import pyarrow as pa

    names = table.column_names
    features = _meta_json(table, "features", path)
    if features is None:
        features = [
            c
            for c in names
            if c not in FIXED_COLUMNS
            and (pa.types.is_floating(table.schema.field(c).type)
                 or pa.types.is_integer(table.schema.field(c).type))
        ]
    if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
        raise TrainError(f"{path}: schema metadata 'features' must be a JSON array of names")
    if not features:
        raise TrainError(
            f"{path}: no feature columns (expected float32 columns after "
            f"{', '.join(FIXED_COLUMNS)}, listed in the schema metadata 'features')"
        )
    if len(set(features)) != len(features):
        raise TrainError(f"{path}: schema metadata 'features' lists a feature twice")
    absent = [f for f in features if f not in names]
    if absent:
        raise TrainError(f"{path}: feature column(s) listed in metadata but absent: {absent}")
    if expect_features is not None and list(features) != list(expect_features):
        raise TrainError(
            f"{path}: its features {features} differ from the model's / training file's "
            f"{list(expect_features)} (same names in the same order are needed)"
        )
    return features


def _feature_matrix(table: Any, features: list[str], path: Path) -> np.ndarray:
    """float32 [rows, features], NaN for nulls."""
    import pyarrow as pa

    n = table.num_rows
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        col = table.column(f)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise TrainError(f"{path}: feature column {f} is {col.type}, not a number")
        x[:, j] = col.to_numpy().astype(np.float32, copy=False) if n else 0
    return x


def _qid_and_labels(table: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The `qid` (int64) and `label` (int32, 0..30) columns, without nulls."""
    n = table.num_rows
    qcol = table.column("qid")
    if qcol.null_count:
        raise TrainError(f"{path}: column qid has {qcol.null_count} null(s)")
    qid = qcol.to_numpy().astype(np.int64, copy=False)

    lcol = table.column("label")
    if lcol.null_count:
        raise TrainError(f"{path}: column label has {lcol.null_count} null(s)")
    label = lcol.to_numpy().astype(np.float64, copy=False)
    if n and (not np.all(np.isfinite(label)) or label.min() < 0 or label.max() > 30):
        raise TrainError(f"{path}: label must be a number in 0..30 (1 = bought, 0 = not)")
    y = np.rint(label).astype(np.int32)
    return qid, y


def _article_codes(table: Any) -> np.ndarray:
    """One int64 code per row, equal for rows of the same `article_id`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    acol = table.column("article_id")
    if pa.types.is_dictionary(acol.type):
        acol = acol.cast(acol.type.value_type)
    return (
        pc.dictionary_encode(acol).combine_chunks().indices.to_numpy(zero_copy_only=False)
        if n
        else np.zeros(0)
    ).astype(np.int64)


def _cutoffs(table: Any, path: Path) -> tuple[list[Any], np.ndarray | None]:
    """The metadata's `cutoffs` (else the distinct values of `cutoff`), and each row's cutoff
    (None without a `cutoff` column or with nulls in it)."""
    import pyarrow.compute as pc

    names = table.column_names
    cutoffs = _meta_json(table, "cutoffs", path)
    if cutoffs is None and "cutoff" in names:
        values = pc.unique(table.column("cutoff")).to_pylist()
        cutoffs = sorted(int(c) for c in values if c is not None)
    if not isinstance(cutoffs, list):
        cutoffs = []
    row_cutoff = (
        table.column("cutoff").to_numpy().astype(np.int64, copy=False)
        if "cutoff" in names and table.column("cutoff").null_count == 0
        else None
    )
    return cutoffs, row_cutoff


def data_hash(paths: Sequence[Path]) -> str:
    """sha256 of the files' bytes, one after the other (model.json's data_hash)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()

"""NYUv2 from a dataset repository on the Hugging Face Hub, converted once into MTAN's layout.

An entry of params ``data.nyuv2.sources`` of the form ``{hub, revision, shards, shape}`` names a
dataset repository holding MTAN's split as Parquet (``tanganke/nyuv2``: docs/data.md says what is
known of it): ``data/<split>-<i>-of-<n>.parquet`` for split ``train`` (n = shards.train) and ``val``
(n = shards.val), one row per sample with the columns

    image         float32 [3, H, W]   RGB in [0, 1]
    segmentation  int64   [H, W]      class 0..12, -1 = unlabelled
    depth         float32 [1, H, W]   metres, 0 = no measurement
    normal        float32 [3, H, W]   unit vector, all-zero = no ground truth

(other columns, such as the mirror's ``noise``, are not read), each array a nested list or a
fixed-size list of that shape, (H, W) = ``shape``. Files come through mbmt.hub (the client's cache,
resume, endpoint, token, offline mode; each verified against the sha256 the Hub announces) at the
pinned revision. Every array is checked before it is written (shape, type, values: RGB in [0, 1],
labels -1..12, depth 0 or positive, normals of unit length where not all-zero); the first that
fails stops the conversion with one DataError naming the file, the row and the column. Row r of a
split, counted over its files in order, becomes MTAN's ``<split>/<modality>/<r>.npy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mbmt import hub
from mbmt.data import mtan_layout
from mbmt.data.hdf5 import GROUND_TRUTH, MAX_DEPTH_M, MODALITIES
from mbmt.errors import DataError
from mbmt.io import sha256_file
from mbmt.tasks import IGNORE_LABEL, NUM_CLASSES

# The mirror's split names are MTAN's folder names (val is NYUv2's test split).
SPLITS = tuple(mtan_layout.SPLIT_FOLDERS.values())
# column -> (canonical modality, leading dimensions before (H, W), Parquet leaf type)
COLUMNS = {"image": ("image", (3,), "float32"), "segmentation": ("semantic", (), "int64"),
           "depth": ("depth", (1,), "float32"), "normal": ("normal", (3,), "float32")}
# |length - 1| allowed for a normal that is not all-zero: catches a column that holds something
# else (scaled, [0, 1]-encoded or noise) without judging how MTAN resampled its normals.
NORMAL_TOLERANCE = 0.05


def is_hub_source(source) -> bool:
    """Whether an entry of data.nyuv2.sources names a Hub dataset repository."""
    return isinstance(source, Mapping) and "hub" in source


def describe(source: Mapping) -> str:
    return f"the Hugging Face Hub dataset {source['hub']} at revision {source['revision']}"


def shard_files(source: Mapping) -> dict[str, list[str]]:
    """The Parquet files of each split, in row order: the names the Hub's datasets library writes."""
    return {split: [f"data/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
            for split, n in ((split, source["shards"][split]) for split in SPLITS)}


def fetch_mirror(source: Mapping, dest: Path) -> dict:
    """Download the mirror's Parquet files and convert them into the MTAN root ``dest``; returns
    the provenance record. hub.Missing / hub.Unavailable when a file cannot be had, DataError when
    one holds something else than the schema above (the message names the row and column)."""
    from huggingface_hub import constants

    repo, revision = source["hub"], source["revision"]
    files = {split: [(name, hub.download(repo, name, revision=revision, repo_type="dataset")) for name in names]
             for split, names in shard_files(source).items()}
    height, width = source["shape"]
    parquet_sha256 = {}
    written: dict[str, str] = {}
    counts = {}
    for split, paths in files.items():
        row = 0
        for name, path in paths:
            parquet_sha256[name] = sha256_file(path)
            row = convert_file(path, dest / split, first_index=row, shape=(height, width), digests=written,
                               shown=f"{repo}@{revision[:7]}:{name}", root=dest)
        counts[split] = row
    commit = files[SPLITS[0]][0][1].parent.parent.name  # <cache>/snapshots/<commit>/data/<file>
    return {"source": "nyuv2", "origin": "hub mirror", "url": None, "local_path": None,
            "hub": {"repo_id": repo, "repo_type": "dataset", "revision": commit, "endpoint": constants.ENDPOINT,
                    "files_sha256": parquet_sha256},
            "converted_sha256": dict(sorted(written.items())),
            "modalities": dict.fromkeys(MODALITIES, GROUND_TRUTH), "counts": counts}


def convert_file(path: Path, split_dir: Path, *, first_index: int, shape: tuple[int, int],
                 digests: dict[str, str], shown: str, root: Path) -> int:
    """Write the rows of one Parquet file as MTAN samples first_index, first_index + 1, ... in
    ``split_dir``, recording each file's sha256 in ``digests`` (by its path under ``root``);
    returns the index after the last. DataError naming ``shown``, the row and the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unreadable = (f"{shown}: not a readable Parquet file ({{}}); it is the file the Hub serves at this revision (its "
                  "sha256 was verified), so another revision or source is needed")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(unreadable.format(exc)) from None
    _check_schema(parquet.schema_arrow, shown, shape)
    row = 0
    with tqdm(total=parquet.metadata.num_rows, desc=f"convert {shown}", unit="row") as bar:
        for group in range(parquet.num_row_groups):
            try:
                table = parquet.read_row_group(group, columns=list(COLUMNS))
            except (pa.ArrowException, OSError) as exc:
                raise DataError(unreadable.format(exc)) from None

            def where(offset: int, column: str, row=row) -> str:
                return (f"{shown}: row {row + offset} (MTAN's {split_dir.name}/{{image,label,depth,normal}}/"
                        f"{first_index + row + offset}.npy), column {column}")

            arrays = {column: _to_numpy(table.column(column), (*dims, *shape), column, where)
                      for column, (_, dims, _) in COLUMNS.items()}
            _check_values(arrays, where)
            for offset in range(table.num_rows):
                index = first_index + row + offset
                mtan_layout.write_sample(split_dir, index, {
                    "image": arrays["image"][offset].transpose(1, 2, 0),
                    "semantic": arrays["segmentation"][offset],
                    "depth": arrays["depth"][offset][0],
                    "normal": arrays["normal"][offset].transpose(1, 2, 0),
                })
                for file in mtan_layout.sample_files(split_dir, index).values():
                    digests[file.relative_to(root).as_posix()] = sha256_file(file)
            row += table.num_rows
            bar.update(table.num_rows)
    return first_index + row


def _check_schema(schema, shown: str, shape: tuple[int, int]) -> None:
    """DataError unless every column the conversion reads is there, a nested or fixed-size list of
    the expected depth (and size, where fixed) over the expected element type."""
    import pyarrow as pa

    for column, (_, dims, leaf) in COLUMNS.items():
        expected = f"{leaf} {list((*dims, *shape))}"
        if column not in schema.names:
            raise DataError(f"{shown}: no column {column!r} (columns: {', '.join(schema.names)}); expected the "
                            f"mirror's schema: {_schema_text(shape)}")
        kind = schema.field(column).type
        for size in (*dims, *shape):
            if pa.types.is_fixed_size_list(kind) and kind.list_size != size \
                    or not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
                raise DataError(f"{shown}: column {column!r} is {schema.field(column).type}, expected {expected} "
                                f"as nested lists (the mirror's schema: {_schema_text(shape)})")
            kind = kind.value_type
        wanted = pa.type_for_alias(leaf)
        if kind != wanted:
            raise DataError(f"{shown}: column {column!r} holds {kind}, expected {expected}")


def _schema_text(shape: tuple[int, int]) -> str:
    return ", ".join(f"{column} {leaf} {list((*dims, *shape))}"
                     for column, (_, dims, leaf) in COLUMNS.items())


def _to_numpy(column, dims: tuple[int, ...], name: str, where: Callable[[int, str], str]) -> np.ndarray:
    """A column of nested lists as an array (rows, *dims); DataError naming the first row with a
    null or a list of another length."""
    import pyarrow.compute as pc

    array = column.combine_chunks()
    rows = len(array)
    per_row = 1  # elements of the current level per row
    for level, size in enumerate(dims):
        _no_nulls(array, per_row, name, where)
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(lengths != size)
        if wrong.size:
            raise DataError(f"{where(int(wrong[0]) // per_row, name)}: axis {level} has length {lengths[wrong[0]]}, "
                            f"expected shape {list(dims)}")
        array = array.flatten()
        per_row *= size
    _no_nulls(array, per_row, name, where)
    return array.to_numpy(zero_copy_only=False).reshape(rows, *dims)


def _no_nulls(array, per_row: int, name: str, where) -> None:
    if array.null_count:
        first = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where(first // per_row, name)}: holds a null (a missing value or list)")


def _first(bad: np.ndarray) -> int | None:
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    return int(rows[0]) if rows.size else None


def _check_values(arrays: dict[str, np.ndarray], where) -> None:
    """DataError naming the first row whose values are out of range, column by column."""
    for column in ("image", "depth", "normal"):
        if (row := _first(~np.isfinite(arrays[column]))) is not None:
            raise DataError(f"{where(row, column)}: holds NaN or infinite values")
    image = arrays["image"]
    if (row := _first((image < 0) | (image > 1))) is not None:
        raise DataError(f"{where(row, 'image')}: values span [{image[row].min():.4g}, {image[row].max():.4g}], "
                        "expected RGB in [0, 1]")
    labels = arrays["segmentation"]
    if (row := _first((labels < IGNORE_LABEL) | (labels >= NUM_CLASSES))) is not None:
        found = labels[row][(labels[row] < IGNORE_LABEL) | (labels[row] >= NUM_CLASSES)]
        raise DataError(f"{where(row, 'segmentation')}: labels {sorted(set(found.tolist()))[:5]} outside "
                        f"{IGNORE_LABEL}..{NUM_CLASSES - 1} (the 13 classes and {IGNORE_LABEL}, unlabelled)")
    depth = arrays["depth"]
    if (row := _first((depth < 0) | (depth >= MAX_DEPTH_M))) is not None:
        raise DataError(f"{where(row, 'depth')}: values span [{depth[row].min():.4g}, {depth[row].max():.4g}] m, "
                        "expected 0 (no measurement) or positive metres")
    normal = arrays["normal"]
    length = np.sqrt((normal**2).sum(axis=1))  # (rows, H, W); float32 is ample for a 0.05 tolerance
    if (row := _first((length > 0) & (np.abs(length - 1) > NORMAL_TOLERANCE))) is not None:
        bad = length[row][(length[row] > 0) & (np.abs(length[row] - 1) > NORMAL_TOLERANCE)]
        raise DataError(f"{where(row, 'normal')}: {bad.size} vectors of length {bad.min():.4g}..{bad.max():.4g}, "
                        f"expected unit vectors (|length - 1| <= {NORMAL_TOLERANCE}) or all-zero (no ground truth)")

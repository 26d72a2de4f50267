"""data/raw (MTAN's layout) -> data/processed/{train,test}.h5 (+ real.h5) and manifest.json.

Every sample is validated at its own resolution, each modality on its own so that an error
names the offending file, then resized to params data.height x data.width if it differs, then
stored by mbmt.data.hdf5.SplitWriter (which validates it again). The whole directory is
written in a temporary sibling and renamed at the end.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mbmt import __version__
from mbmt.data import mtan_layout, nyu_raw
from mbmt.data.fetch import read_source
from mbmt.data.hdf5 import ABSENT, ERROR_BOUNDS, GROUND_TRUTH, MODALITIES, STORAGE, SplitWriter, validate_sample
from mbmt.data.settings import DataSettings
from mbmt.errors import DataError
from mbmt.io import atomic_path, write_json
from mbmt.paths import PROCESSED_DIR, RAW_DIR, REAL_SPLIT, SPLITS, manifest_file, split_file
from mbmt.tasks import CLASS_NAMES

RESIZE_METHODS = {
    "image": "area average when shrinking, bilinear when enlarging (Pillow BOX / BILINEAR)",
    "semantic": "nearest neighbour (pixel centres)",
    "depth": "as image, over valid pixels only: a pixel is valid where at least half of its footprint is, "
             "and its value averages only valid measurements",
    "normal": "as depth, then renormalised to unit length (missing where the valid vectors cancel out)",
}
REAL_NOTE = ("NYU Depth V2 frames in raw form: semantic labels and depth are ground truth, "
             "surface normals are absent (all-zero, ignored by the losses and metrics)")
_VALID_WEIGHT = 0.5  # share of a resized pixel's footprint that must be valid for it to be valid


def preprocess(data: DataSettings, *, raw_dir: Path = RAW_DIR, out_dir: Path = PROCESSED_DIR) -> dict:
    """Write the processed splits and the manifest from ``raw_dir`` at ``data``'s size (with
    ``data.real_images`` imported too); returns the manifest."""
    height, width = data.height, data.width
    source = read_source(raw_dir)
    if source["source"] != data.source:
        raise DataError(f"{raw_dir}: holds the {source['source']!r} dataset but params data.source is "
                        f"{data.source!r}; re-run `mbmt fetch`")
    splits = {}
    with atomic_path(out_dir, directory=True) as tmp:
        for split in SPLITS:
            src = mtan_layout.split_dir(raw_dir, split)
            count = mtan_layout.sample_count(src)
            digests: dict[str, str] = {}
            samples = ((mtan_layout.read_sample(src, i, digests), mtan_layout.sample_files(src, i))
                       for i in range(count))
            entry = write_split(tmp / split_file(split).name, samples, count, height, width, split=split,
                                source=source["source"], modalities=source["modalities"],
                                attrs={"raw": str(src), "raw_sha256": source.get("sha256")})
            splits[split] = {"from": str(src), **entry, "inputs_sha256": digest_of(digests, raw_dir)}
        if data.real_images:
            splits[REAL_SPLIT] = import_real(data.real_images, tmp / split_file(REAL_SPLIT).name, height, width)
        manifest = {
            "mbmt_version": __version__,
            "height": height, "width": width,
            "class_names": list(CLASS_NAMES),
            "storage": {name: {"dtype": np.dtype(dtype).name, "error_bound": ERROR_BOUNDS[name]}
                        for name, (dtype, _) in STORAGE.items()},
            "source": source,
            "splits": splits,
            "resize_methods": RESIZE_METHODS,
            "params": {"data": data.as_section()},
        }
        write_json(tmp / manifest_file().name, manifest)
    for split, entry in splits.items():
        print(f"{out_dir / entry['file']}: {entry['count']} samples, {height}x{width}"
              + (f" (resized from {entry['raw_sizes']})" if entry["resized"] else ""))
    return manifest


def import_real(folder: str | Path, dest: Path, height: int, width: int) -> dict:
    """Write NYU's raw-form frames in ``folder`` to split file ``dest``; returns the manifest entry."""
    folder = nyu_raw.check_folder(folder)
    ids = nyu_raw.frame_ids(folder)
    provenance = nyu_raw.read_index(folder)
    digests: dict[str, str] = {}
    samples = ((nyu_raw.read_frame(folder, k, digests), nyu_raw.frame_files(folder, k)) for k in ids)
    modalities = {"image": GROUND_TRUTH, "semantic": GROUND_TRUTH, "depth": GROUND_TRUTH, "normal": ABSENT}
    entry = write_split(dest, samples, len(ids), height, width, split=REAL_SPLIT, source="nyuv2-raw",
                        modalities=modalities, attrs={"raw": str(folder), "frames": ids, "provenance": provenance})
    return {"from": str(folder), **entry, "inputs_sha256": digest_of(digests, folder),
            "frames": ids, "provenance": provenance, "note": REAL_NOTE}


def write_split(dest: Path, samples: Iterable[tuple[dict, dict[str, Path]]], count: int, height: int, width: int,
                *, split: str, source: str, modalities: dict[str, str], attrs: dict) -> dict:
    """Validate, resize if needed and store ``count`` (sample, its files) pairs; returns the manifest entry."""
    raw_sizes: Counter[tuple[int, int]] = Counter()
    with SplitWriter(dest, count, height, width, split=split, source=source, modalities=modalities,
                     attrs=attrs) as writer:
        for sample, files in tqdm(samples, total=count, desc=f"preprocess {split}", unit="sample"):
            size = validate_files(sample, files)
            raw_sizes[size] += 1
            if size != (height, width):
                sample = resize_sample(sample, height, width)
            writer.add(sample, where=_describe(files))
    return {
        "file": dest.name,
        "count": count,
        "shapes": {name: [count, height, width] if channels is None else [count, channels, height, width]
                   for name, (_, channels) in STORAGE.items()},
        "dtypes": {name: np.dtype(dtype).name for name, (dtype, _) in STORAGE.items()},
        "modalities": modalities,
        "raw_sizes": [list(size) for size in sorted(raw_sizes)],
        "resized": set(raw_sizes) != {(height, width)},
    }


def digest_of(digests: dict[str, str], root: str | Path) -> str:
    """One sha256 over the files' sha256, as ``sha256sum`` lines sorted by path relative to ``root``."""
    lines = sorted(f"{digest}  {Path(path).relative_to(root).as_posix()}\n" for path, digest in digests.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _describe(files: dict[str, Path]) -> str:
    return " + ".join(str(path) for path in files.values())


def _blank(height: int, width: int) -> dict:
    """A valid sample with nothing in it (missing depth and normals), to validate one modality at a time."""
    return {"image": np.zeros((height, width, 3), np.float32), "semantic": np.zeros((height, width), np.int64),
            "depth": np.zeros((height, width), np.float32), "normal": np.zeros((height, width, 3), np.float32)}


def validate_files(sample: dict, files: dict[str, Path]) -> tuple[int, int]:
    """validate_sample at the sample's own size, the error naming the offending file; returns (height, width).

    The size is the one most modalities have (the image's on a tie), so a single odd-shaped
    modality is the one reported.
    """
    sizes = [np.shape(sample[name])[:2] for name in MODALITIES if np.ndim(sample[name]) >= 2]
    if not sizes:
        raise DataError(f"{files['image']}: no modality is an image (shapes "
                        f"{ {name: np.shape(sample[name]) for name in MODALITIES} })")
    height, width = Counter(sizes).most_common(1)[0][0]
    try:
        validate_sample(sample, height, width, where=_describe(files))
    except DataError:
        blank = _blank(height, width)
        for name, path in files.items():  # the first modality that fails alone names its file
            validate_sample({**blank, name: sample[name]}, height, width, where=str(path))
        raise
    return height, width


def _resampler(size: tuple[int, int], shrink: bool):
    """A function resizing one float (H, W) map to ``size`` = (height, width)."""
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    height, width = size

    def resample(array: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
        return np.asarray(image.resize((width, height), method))
    return resample


def _channels(array: np.ndarray) -> Iterator[np.ndarray]:
    return (array[..., c] for c in range(array.shape[-1]))


def resize_sample(sample: dict, height: int, width: int) -> dict:
    """Resize a valid canonical sample to (height, width) as RESIZE_METHODS describes."""
    src_height, src_width = np.shape(sample["semantic"])
    resample = _resampler((height, width), shrink=height <= src_height and width <= src_width)

    def masked(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Channel-last average over valid pixels only, and where enough of the footprint is valid."""
        weight = resample(valid.astype(np.float32))
        keep = weight >= _VALID_WEIGHT
        mean = np.stack([resample(np.where(valid, c, 0)) for c in _channels(values)], -1)
        return mean / np.maximum(weight, 1e-12)[..., None], keep

    image = np.stack([resample(c) for c in _channels(np.asarray(sample["image"]))], -1)
    rows = ((np.arange(height) + 0.5) * src_height / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * src_width / width).astype(np.int64)
    depth = np.asarray(sample["depth"], np.float32)
    depth, depth_keep = masked(depth[..., None], depth > 0)
    normal = np.asarray(sample["normal"], np.float32)
    normal, normal_keep = masked(normal, np.any(normal != 0, axis=-1))
    norm = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal_keep &= norm[..., 0] > 1e-6  # opposite normals leave only rounding noise, not a direction
    return {
        "image": np.clip(image, 0.0, 1.0),
        "semantic": np.asarray(sample["semantic"])[rows[:, None], cols[None, :]],
        "depth": np.where(depth_keep, depth[..., 0], 0.0).astype(np.float32),
        "normal": np.where(normal_keep[..., None], normal / np.maximum(norm, 1e-12), 0.0).astype(np.float32),
    }

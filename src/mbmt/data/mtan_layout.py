"""MTAN's NYUv2 folder layout: one ``.npy`` file per sample and modality.

::

    <root>/{train,val}/image/<i>.npy    (H, W, 3) float  RGB in [0, 1]
                       label/<i>.npy    (H, W)    float  class 0..12, -1 = unlabelled
                       depth/<i>.npy    (H, W, 1) float  metres, 0 = no measurement
                       normal/<i>.npy   (H, W, 3) float  unit vector, all-zero = no ground truth

``val`` is NYUv2's 654-image test split (MTAN's naming). Readers return the canonical sample
of mbmt.data.hdf5 (semantic/depth without MTAN's extra axes); writers store float32, as MTAN.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from mbmt.errors import DataError

# canonical modality -> MTAN's folder name
FOLDERS = {"image": "image", "semantic": "label", "depth": "depth", "normal": "normal"}
# mbmt split -> MTAN's split folder
SPLIT_FOLDERS = {"train": "train", "test": "val"}

_INDEX_FILE = re.compile(r"^(\d+)\.npy$")


def split_dir(root: str | Path, split: str) -> Path:
    """The folder of mbmt split ``split`` ("train" or "test") under MTAN root ``root``."""
    return Path(root) / SPLIT_FOLDERS[split]


def sample_files(split_dir: str | Path, index: int) -> dict[str, Path]:
    """The four files of sample ``index``, by canonical modality name."""
    return {name: Path(split_dir) / folder / f"{index}.npy" for name, folder in FOLDERS.items()}


def is_root(path: str | Path) -> bool:
    """Whether ``path`` looks like an MTAN root (both split folders with an image folder)."""
    return all((Path(path) / folder / FOLDERS["image"]).is_dir() for folder in SPLIT_FOLDERS.values())


def sample_count(split_dir: str | Path, shown_as: str | None = None) -> int:
    """Number of samples in ``split_dir``; DataError unless every modality holds exactly 0..n-1.

    ``shown_as`` names ``split_dir`` in messages instead of its path (e.g. the archive a temporary
    copy came from).
    """
    split_dir = Path(split_dir)
    shown = shown_as or str(split_dir)
    indices = {}
    for folder in FOLDERS.values():
        path = split_dir / folder
        if not path.is_dir():
            raise DataError(f"{shown}/{folder}: folder missing; expected MTAN's layout "
                            f"<root>/{{train,val}}/{{{','.join(FOLDERS.values())}}}/<i>.npy")
        indices[folder] = {int(m[1]) for p in path.iterdir() if (m := _INDEX_FILE.match(p.name))}
    present = set().union(*indices.values())
    if not present:
        raise DataError(f"{shown}/{FOLDERS['image']}: no <i>.npy samples")
    count = max(present) + 1  # a sample any modality has, every modality needs
    gaps = [f"{shown}/{folder}: missing {_some(sorted(set(range(count)) - found))}"
            for folder, found in indices.items() if len(found) < count]
    if gaps:
        raise DataError(f"{'; '.join(gaps)} (every modality needs the samples 0..{count - 1}.npy)")
    return count


def _some(ids: list[int], shown: int = 5) -> str:
    return f"{ids[:shown]}" + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def load_array(path: Path, digests: dict[str, str] | None = None) -> np.ndarray:
    """Load one ``.npy`` file (never pickles); with ``digests``, record its sha256 under str(path)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if digests is not None:
        digests[str(path)] = hashlib.sha256(data).hexdigest()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc}); re-fetch the dataset") from None


def read_sample(split_dir: str | Path, index: int, digests: dict[str, str] | None = None) -> dict:
    """Sample ``index`` of ``split_dir`` as a canonical sample (arrays as stored, not yet validated).

    Labels must be whole numbers (MTAN stores them as floats) to become integer classes. With
    ``digests``, the sha256 of every file read is recorded under its path.
    """
    files = sample_files(split_dir, index)
    arrays = {name: load_array(path, digests) for name, path in files.items()}
    label = arrays["semantic"]
    if not np.issubdtype(label.dtype, np.number) or not np.isfinite(label).all() \
            or not np.array_equal(label, np.round(label)):
        raise DataError(f"{files['semantic']}: labels must be whole numbers -1..12 (MTAN's classes), "
                        "found non-integer or non-finite values")
    depth = arrays["depth"]
    return {
        "image": arrays["image"],
        "semantic": label.astype(np.int64),
        # MTAN's trailing channel axis; any other shape is left for validation to report
        "depth": depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth,
        "normal": arrays["normal"],
    }


def write_sample(split_dir: str | Path, index: int, sample: dict) -> None:
    """Write a canonical sample as MTAN's four float32 arrays (folders are created as needed)."""
    arrays = {
        "image": np.asarray(sample["image"], np.float32),
        "semantic": np.asarray(sample["semantic"], np.float32),
        "depth": np.asarray(sample["depth"], np.float32)[..., None],
        "normal": np.asarray(sample["normal"], np.float32),
    }
    for name, path in sample_files(split_dir, index).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arrays[name])

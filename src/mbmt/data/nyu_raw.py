"""NYU Depth V2 frames in their original form, one PNG per modality (params data.real_images).

::

    <folder>/<k>_rgb.png       480x640 RGB, uint8
             <k>_depth_mm.png  480x640 uint16, depth in millimetres (0 = no measurement)
             <k>_label13.png   480x640 uint8, 0 = unlabelled, 1..13 = MTAN's classes 0..12
             index.csv         optional provenance, one row per frame, first column k

Surface normals have no ground truth in this form: they are all-zero ("absent").
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mbmt.errors import DataError

# canonical modality -> file name pattern
FILES = {"image": "{k}_rgb.png", "semantic": "{k}_label13.png", "depth": "{k}_depth_mm.png"}
INDEX_FILE = "index.csv"
MODES = {"image": ("RGB",), "semantic": ("L", "P"), "depth": ("I;16",)}  # the PIL modes of each file
_RGB_FILE = re.compile(r"^(\d+)_rgb\.png$")


def check_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"params data.real_images: folder {folder} not found; set it to a folder of NYU frames "
                        "(<k>_rgb.png, <k>_depth_mm.png, <k>_label13.png) or to null")
    return folder


def read_index(folder: str | Path) -> list[dict[str, str]] | None:
    """The rows of ``folder``/index.csv (provenance of each frame), or None without one."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "k" not in rows[0]:
        raise DataError(f"{path}: expected a CSV with a header row whose first column is k (the frame number)")
    return rows


def frame_ids(folder: str | Path) -> list[int]:
    """The frames of ``folder``: those listed in index.csv, else every <k>_rgb.png."""
    folder = check_folder(folder)
    rows = read_index(folder)
    if rows is not None:
        return [int(row["k"]) for row in rows]
    ids = sorted(int(m[1]) for p in folder.iterdir() if (m := _RGB_FILE.match(p.name)))
    if not ids:
        raise DataError(f"{folder}: no <k>_rgb.png frames (params data.real_images)")
    return ids


def frame_files(folder: str | Path, k: int) -> dict[str, Path]:
    return {name: Path(folder) / pattern.format(k=k) for name, pattern in FILES.items()}


def _read_png(path: Path, modes: tuple[str, ...], digests: dict[str, str] | None) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing (every frame of params data.real_images needs "
                        f"{', '.join(FILES.values())})") from None
    if digests is not None:
        digests[str(path)] = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in modes:
                raise DataError(f"{path}: PNG mode {image.mode}, expected {' or '.join(modes)}")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable PNG ({exc})") from None


def read_frame(folder: str | Path, k: int, digests: dict[str, str] | None = None) -> dict:
    """Frame ``k`` as a canonical sample at its own resolution (normals all-zero).

    With ``digests``, the sha256 of every file read is recorded under its path.
    """
    arrays = {name: _read_png(path, MODES[name], digests) for name, path in frame_files(folder, k).items()}
    depth = arrays["depth"]
    return {
        "image": arrays["image"].astype(np.float32) / 255.0,
        "semantic": arrays["semantic"].astype(np.int64) - 1,  # 0 (unlabelled) -> -1
        "depth": depth.astype(np.float32) / 1000.0,  # millimetres -> metres; 0 stays "no measurement"
        "normal": np.zeros((*depth.shape[:2], 3), np.float32),
    }

"""Run a trained model on RGB images and draw each task's prediction to a PNG.

The maps are coloured by mbmt.visual (as in the report's figures); its names (`SEMANTIC_PALETTE`,
`colorize_semantic`, `colorize_depth`, `colorize_normal`, ...) are importable from here too.

Images are resized (bilinear, antialiased) to the resolution the model was trained at, which
the model file records; the outputs are at that resolution. Every input is checked (found,
readable, decodable, an 8-bit colour or grayscale image) before torch is imported and the model
built, so a wrong input fails at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mbmt.errors import DataError, MbmtError
from mbmt.io import atomic_path
from mbmt.visual import (  # noqa: F401  (MISSING_COLOUR, SEMANTIC_PALETTE: re-exported for callers)
    DEPTH_COLORMAP,
    MISSING_COLOUR,
    SEMANTIC_PALETTE,
    class_legend_handles,
    colorize_depth,
    colorize_normal,
    colorize_semantic,
)

if TYPE_CHECKING:
    import torch

DEPTH_RANGE_M = (0.0, 10.0)  # NYUv2's Kinect range; widened when a prediction goes beyond it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr")  # what a folder contributes
# Single-channel PIL modes wider than 8 bits (I;16*, I, F). Converting them to RGB clips to 0..255
# (a 16-bit image comes out almost white), and they are mostly depth maps: refused, even by name.
WIDE_MODE_BITS = {"I": "32-bit integer", "F": "32-bit float"}


def predict(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """``images`` (B, 3, H, W) RGB in [0, 1] -> the model's tasks as numpy arrays on the host:
    semantic (B, H, W) int64 class ids, depth (B, H, W) float32 metres, normal (B, H, W, 3) float32.
    """
    import torch

    from mbmt.device import to_numpy

    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        outputs = model(images.to(device))
    result = {}
    for task, out in outputs.items():
        out = out.float()
        if task == "semantic":
            result[task] = to_numpy(out.argmax(dim=1))  # the class ids alone cross to the host
        elif task == "depth":
            result[task] = to_numpy(out[:, 0])
        else:
            result[task] = to_numpy(out.permute(0, 2, 3, 1))
    return result


def image_mode(path: Path, *, decode: bool) -> str:
    """The PIL mode of image file ``path``; with ``decode``, after decoding all of it, so that a
    truncated file fails now rather than halfway through writing the outputs."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def check_image(path: Path) -> None:
    """DataError unless ``path`` decodes to an image that converts to RGB without clipping (colour,
    or 8-bit grayscale, which becomes gray RGB)."""
    mode = image_mode(path, decode=True)
    if mode in WIDE_MODE_BITS or mode.startswith("I;16"):
        raise DataError(f"{path}: a {WIDE_MODE_BITS.get(mode, '16-bit')} single-channel image (PIL mode {mode}), "
                        "such as a depth map, not a photo; mbmt predict reads 8-bit colour or grayscale images")


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named in ``inputs``, each checked by ``check_image``; a folder contributes its
    colour images (depth and label maps, single-channel, are skipped), in name order."""
    found: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            candidates = sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            colour = [path for path in candidates if image_mode(path, decode=False) in COLOUR_MODES]
            if not colour:
                raise DataError(f"{entry}: no colour image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found.extend(colour)
        elif entry.is_file():
            found.append(entry)
        else:
            raise DataError(f"{entry}: no such image file or folder")
    found = list({p.resolve(): p for p in found}.values())  # a file named twice (alone, in its folder) counts once
    stems = [p.stem for p in found]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise DataError(f"several inputs are named {', '.join(duplicates)}; their outputs would overwrite each other "
                        f"(pass them in separate runs with different --out folders)")
    for path in found:
        check_image(path)
    return found


def read_image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """An image file as (3, height, width) float32 RGB in [0, 1], resized to ``size`` (height, width)."""
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _figure(rgb: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    height, width = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(3 + 6 * width / max(height, width), 1 + 6 * height / max(height, width)), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return fig, ax


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def write_semantic_png(ids: np.ndarray, path: Path, title: str) -> None:
    """The segmentation with a legend of the class names."""
    fig, ax = _figure(colorize_semantic(ids), title)
    ax.legend(handles=class_legend_handles(), loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8,
              frameon=False)
    _save(fig, path)


def write_depth_png(depth: np.ndarray, path: Path, title: str) -> None:
    """The depth map with a colour bar in metres."""
    import matplotlib
    from matplotlib.cm import ScalarMappable

    vmin, vmax = DEPTH_RANGE_M[0], max(DEPTH_RANGE_M[1], float(np.nanmax(depth)))
    fig, ax = _figure(colorize_depth(depth, vmin, vmax, predicted=True), title)
    mappable = ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=DEPTH_COLORMAP)
    fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label="depth (m)")
    _save(fig, path)


def write_normal_png(normal: np.ndarray, path: Path, title: str) -> None:
    """The normals RGB-encoded, (R, G, B) = (x, y, z)."""
    fig, _ = _figure(colorize_normal(normal), f"{title}\nRGB = (x, y, z) from [-1, 1]")
    _save(fig, path)


WRITERS = {"semantic": write_semantic_png, "depth": write_depth_png, "normal": write_normal_png}


def predict_files(checkpoint: str | Path, inputs: Sequence[str | Path], out: str | Path, *,
                  npy: bool = False, device: str = "auto", batch_size: int = 4) -> list[Path]:
    """Predict every image of ``inputs`` with the model file ``checkpoint``; the files written to ``out``.

    Per image and task: ``<stem>_<task>.png`` (and ``<stem>_<task>.npy`` with ``npy``).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if batch_size < 1:
        raise MbmtError(f"--batch-size {batch_size}: give at least 1 image per forward pass")
    if not checkpoint.is_file():
        raise MbmtError(f"{checkpoint}: model file not found (train one with `mbmt train MODEL`)")
    images = find_images(inputs)
    # Only now the heavy imports (torch, timm: most of a minute on a cold start).
    import matplotlib
    import torch

    from mbmt.device import resolve_device
    from mbmt.models import load_model

    matplotlib.use("Agg")
    model, meta = load_model(checkpoint, map_location="cpu")
    size = (meta.get("extra") or {}).get("input_size")
    if not size:
        raise MbmtError(f"{checkpoint}: the model file does not record the input size it was trained at "
                        f"(extra.input_size); save it with `mbmt train`")
    model.to(resolve_device(device))
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        results = predict(model, torch.stack([read_image(p, tuple(size)) for p in chunk]))
        for i, path in enumerate(chunk):
            for task, arrays in results.items():
                png = out / f"{path.stem}_{task}.png"
                WRITERS[task](arrays[i], png, f"{path.name}: {task} ({meta['name']})")
                written.append(png)
                if npy:
                    written.append(out / f"{path.stem}_{task}.npy")
                    with atomic_path(written[-1]) as tmp, open(tmp, "wb") as f:
                        np.save(f, arrays[i])
    return written

"""How a task's map is coloured, and the class legend: one look for every picture the project draws.

`mbmt predict`'s PNGs (mbmt.predict), the report's figures (mbmt.reporting.figures) and the
synthetic data's preview (mbmt.data.synthetic.plots) all colour through this module, so a map
looks the same wherever it is shown:

- segmentation: one fixed colour per NYUv2 class (`SEMANTIC_PALETTE`, `CLASS_NAMES` order),
  unlabelled (-1) black;
- depth: matplotlib's perceptually uniform "viridis" over [vmin, vmax] metres, clamped to the scale;
  in ground truth, 0 marks a missing measurement (black); a prediction has none (MTAN's depth is not
  forced positive, and a value <= 0 m is drawn at the near end);
- normals: the unit vector's components mapped from [-1, 1] to [0, 255] as (R, G, B) = (x, y, z),
  missing (all-zero) black.

It sits at the bottom of the package (numpy, matplotlib and mbmt.tasks only, matplotlib imported
when first drawn), so that data/ may use it without importing prediction or evaluation code.
"""

from __future__ import annotations

import numpy as np

from mbmt.tasks import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES

# One colour per class of CLASS_NAMES (bed, books, ceiling, chair, floor, furniture, objects,
# picture, sofa, table, tv, wall, window): distinct hues, none black (unlabelled) or white (paper).
SEMANTIC_PALETTE = np.array([
    (0, 114, 178),    # bed
    (230, 159, 0),    # books
    (190, 190, 190),  # ceiling
    (213, 94, 0),     # chair
    (120, 80, 40),    # floor
    (0, 158, 115),    # furniture
    (240, 228, 66),   # objects
    (204, 121, 167),  # picture
    (86, 180, 233),   # sofa
    (160, 60, 60),    # table
    (40, 40, 120),    # tv
    (150, 150, 110),  # wall
    (150, 230, 230),  # window
], dtype=np.uint8)
MISSING_COLOUR = np.zeros(3, dtype=np.uint8)
DEPTH_COLORMAP = "viridis"


def colorize_semantic(ids: np.ndarray) -> np.ndarray:
    """(H, W) class ids -1..12 -> (H, W, 3) uint8; unlabelled (-1) black."""
    ids = np.asarray(ids)
    if ids.min(initial=0) < IGNORE_LABEL or ids.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"class ids span [{ids.min()}, {ids.max()}], expected {IGNORE_LABEL}..{NUM_CLASSES - 1}")
    table = np.vstack([SEMANTIC_PALETTE, MISSING_COLOUR])  # index -1 reads the last row
    return table[ids]


def colorize_depth(depth: np.ndarray, vmin: float, vmax: float, *, predicted: bool = False) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 through DEPTH_COLORMAP over [vmin, vmax], clamped to it.

    Ground truth (``predicted`` False): 0 marks a missing measurement, so <= 0 is black. A
    prediction has no missing pixels: <= 0 m (MTAN's depth is not forced positive) is clamped to
    the near end like any value below ``vmin``. Non-finite values are black either way.
    """
    import matplotlib

    depth = np.asarray(depth, dtype=np.float64)
    scaled = np.clip((depth - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = matplotlib.colormaps[DEPTH_COLORMAP](scaled, bytes=True)[..., :3]
    rgb[~(np.isfinite(depth) & ((depth > 0) | predicted))] = MISSING_COLOUR
    return rgb


def colorize_normal(normal: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit vectors -> (H, W, 3) uint8, (x, y, z) in [-1, 1] as (R, G, B); all-zero black."""
    normal = np.asarray(normal, dtype=np.float64)
    rgb = np.rint((np.clip(normal, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    rgb[~np.any(normal != 0, axis=-1)] = MISSING_COLOUR
    return rgb


def class_legend_handles() -> list:
    """One legend entry per class: its palette colour, outlined, labelled with its name. Where the
    legend goes (beside an image, under a figure) is the caller's choice."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=SEMANTIC_PALETTE[i] / 255, edgecolor="black", linewidth=0.3, label=name)
            for i, name in enumerate(CLASS_NAMES)]

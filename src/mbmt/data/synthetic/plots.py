"""A picture of samples to look at (`mbmt synth --figure`): RGB, depth, labels and normals per row."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_samples(samples: list[dict[str, np.ndarray]], path: str | Path) -> None:
    """Draw samples one per row — RGB, depth, labels, normals — with a class legend, to a PNG.

    Colours are mbmt.visual's (as in `mbmt predict` and the report). Imports matplotlib.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    from mbmt.io import atomic_path
    from mbmt.visual import DEPTH_COLORMAP, class_legend_handles, colorize_depth, colorize_normal, colorize_semantic

    height, width = samples[0]["depth"].shape
    vmax = max(float(s["depth"].max()) for s in samples)
    columns = ("RGB image", "depth (black: no measurement)", "labels (black: unlabelled)",
               "normals: (x, y, z) as RGB (black: none)")
    fig = Figure(figsize=(4 * 2.4 * width / height, 2.4 * len(samples) + 1.4), layout="constrained")
    axes = fig.subplots(len(samples), 4, squeeze=False)
    for row, sample in enumerate(samples):
        panels = (sample["image"], colorize_depth(sample["depth"], 0.0, vmax),
                  colorize_semantic(sample["semantic"]), colorize_normal(sample["normal"]))
        for ax, panel, title in zip(axes[row], panels, columns):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    scale = axes[-1, 1].inset_axes((0.05, -0.1, 0.9, 0.05))  # under the last depth panel
    fig.colorbar(ScalarMappable(Normalize(0.0, vmax), DEPTH_COLORMAP), cax=scale,
                 orientation="horizontal", label="depth (m)")
    fig.legend(handles=class_legend_handles(), loc="outside lower center", ncol=7, fontsize=9, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)

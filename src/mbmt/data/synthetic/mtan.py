"""Synthetic scenes written in MTAN's NYUv2 layout (mbmt.data.mtan_layout): the one writer behind
`mbmt fetch` with params data.source synthetic and `mbmt synth --format mtan`.

Not imported by the package's ``__init__``, which stays numpy only: this module validates each
sample with mbmt.data.hdf5's rules before it is written.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from mbmt.data import mtan_layout
from mbmt.data.hdf5 import validate_sample
from mbmt.data.synthetic import generate
from mbmt.io import atomic_path


def write_split(folder: str | Path, split: str, count: int, height: int, width: int, seed: int, *,
                workers: int = 1, keep: int = 0) -> list[dict]:
    """Render scenes 0..``count``-1 of ``split`` ("train" or "test") at ``height`` x ``width`` from
    ``seed`` into the MTAN split folder ``folder`` (its image/, label/, depth/ and normal/), which
    appears only once complete; returns the first ``keep`` samples. The files are the same for any
    number of ``workers``."""
    kept = []
    scenes = generate(count, height, width, seed, split=split, workers=workers)
    with atomic_path(folder, directory=True) as tmp:
        for index, sample in enumerate(tqdm(scenes, total=count, desc=f"render {split}", unit="scene")):
            validate_sample(sample, height, width, f"synthetic {split} sample {index}")
            mtan_layout.write_sample(tmp, index, sample)
            if index < keep:
                kept.append(sample)
    return kept

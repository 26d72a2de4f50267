"""Validate the raw dataset and write data/processed/{train,test}.h5 plus manifest.json.

Reads data/raw/ (MTAN's layout, from `mbmt fetch`); every sample is checked (shapes, finite
values, image in [0, 1], classes -1..12, depth >= 0, unit normals) and an invalid one stops the
stage with the name of its file. Samples whose size differs from data.height x data.width are
resized (see docs/data.md). If data.real_images names a folder of NYU frames (<k>_rgb.png,
<k>_depth_mm.png, <k>_label13.png), they are imported as data/processed/real.h5.
data/processed/ is replaced only when complete.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """All settings come from params (data.*); the stage takes no options of its own."""


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.data.preprocess import preprocess
    from mbmt.data.settings import DataSettings

    preprocess(DataSettings.from_section(load_params(args.params)["data"]))
    return 0

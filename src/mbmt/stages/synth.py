"""Render synthetic NYUv2-like indoor scenes to an HDF5 split file, or to MTAN's .npy folder layout.

Rooms with furniture seen by NYUv2's Kinect camera model; depth, normals and 13-class labels come
from the same ray hits, so they are exactly consistent (docs/synthetic.md). Sample i depends only
on (seed, split, i): the test split never repeats a training scene. Defaults come from params
(data.synthetic.seed and <split>_size, data.height and data.width). Examples:

    mbmt synth --out synthetic/train.h5 --split train
    mbmt synth --out synthetic_mtan --split test --format mtan --count 16   # -> synthetic_mtan/val/
    mbmt synth --out /tmp/preview.h5 --split test --count 4 --figure /tmp/preview.png
"""

from __future__ import annotations

import argparse
import os

FORMATS = ("hdf5", "mtan")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="hdf5: the split file to write; mtan: the MTAN root (the split goes to "
                        "PATH/train or PATH/val, MTAN's name for the test split)")
    parser.add_argument("--split", required=True, choices=("train", "test"))
    parser.add_argument("--count", type=int, metavar="N", help="samples (default: data.synthetic.<split>_size)")
    parser.add_argument("--height", type=int, metavar="H", help="pixels (default: data.height)")
    parser.add_argument("--width", type=int, metavar="W", help="pixels (default: data.width)")
    parser.add_argument("--seed", type=int, metavar="S", help="scene seed (default: data.synthetic.seed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="render in N processes; the output is the same for any N (default: all CPUs)")
    parser.add_argument("--format", choices=FORMATS, default="hdf5", help="output layout (default: hdf5)")
    parser.add_argument("--figure", metavar="PNG",
                        help="also draw the first samples (RGB, depth, labels, normals) to this PNG")
    parser.add_argument("--figure-samples", type=int, default=4, metavar="N",
                        help="samples in the figure (default: 4)")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from mbmt.config import load_params
    from mbmt.data import mtan_layout, synthetic
    from mbmt.data.hdf5 import MODALITIES, RENDERED, SplitWriter
    from mbmt.data.settings import DataSettings
    from mbmt.data.synthetic.mtan import write_split
    from mbmt.errors import MbmtError

    data = DataSettings.from_section(load_params(args.params)["data"])
    count = args.count if args.count is not None else data.synthetic.size(args.split)
    height = args.height if args.height is not None else data.height
    width = args.width if args.width is not None else data.width
    seed = args.seed if args.seed is not None else data.synthetic.seed
    if count < 1 or seed < 0 or min(height, width) < synthetic.MIN_SIZE or args.figure_samples < 1:
        raise MbmtError(f"--count {count}, --seed {seed}, --height {height}, --width {width}, --figure-samples "
                        f"{args.figure_samples}: need at least one sample, a seed >= 0, at least "
                        f"{synthetic.MIN_SIZE} pixels a side and at least one sample in the figure")

    out = Path(args.out)
    if args.format == "mtan":  # the writer fetch renders data/raw with
        written = mtan_layout.split_dir(out, args.split)
        kept = write_split(written, args.split, count, height, width, seed, workers=args.workers,
                           keep=args.figure_samples)
    else:
        written = out
        attrs = {"generator": "mbmt.data.synthetic", "seed": seed,
                 "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), synthetic.intrinsics(height, width))),
                 "depth_range_m": synthetic.DEPTH_RANGE_M, "normal_frame": synthetic.NORMAL_FRAME}
        samples = tqdm(synthetic.generate(count, height, width, seed, split=args.split, workers=args.workers),
                       total=count, desc=f"synth {args.split}", unit="sample")
        kept = []  # the first samples, for the figure
        # The file appears only once complete.
        with SplitWriter(out, count, height, width, split=args.split, source="synthetic",
                         modalities=dict.fromkeys(MODALITIES, RENDERED), attrs=attrs) as writer:
            for index, sample in enumerate(samples):
                writer.add(sample, f"synthetic {args.split} sample {index}")
                if index < args.figure_samples:
                    kept.append(sample)
    print(f"{written}: {count} synthetic {args.split} samples, {height}x{width}, seed {seed}")
    if args.figure:
        synthetic.plot_samples(kept, args.figure)
        print(f"{args.figure}: {len(kept)} samples drawn")
    return 0

"""Run a trained model on RGB images and write its segmentation, depth and normal maps.

Each image is resized to the resolution the model was trained at (recorded in the model file).
Per image and task, OUT holds STEM_semantic.png (13-class palette with a legend), STEM_depth.png
(colour-mapped, colour bar in metres) and STEM_normal.png (RGB-encoded), for the tasks the
model predicts; with --npy also the arrays (class ids, metres, unit vectors) as .npy. Folders
contribute their colour images (single-channel depth or label maps are skipped); a file named on
its own may also be 8-bit grayscale, not 16- or 32-bit. Every input is checked before the model
is loaded. Example:
    mbmt predict --checkpoint models/mbmt_partial/seed0/model.pt ../shared/data/nyuv2-test10 --out predictions/
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a model file, e.g. models/mtnet/seed0/model.pt")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="RGB image files or folders of them")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the output PNGs (created)")
    parser.add_argument("--npy", action="store_true", help="also write the raw predictions as .npy arrays")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="images per forward pass (default 4)")


def main(args: argparse.Namespace) -> int:
    from mbmt.predict import predict_files

    written = predict_files(args.checkpoint, args.inputs, args.out, npy=args.npy, device=args.device,
                            batch_size=args.batch_size)
    print(f"{args.out}: {len(written)} files")
    return 0

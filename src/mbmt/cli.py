"""The `mbmt` command: one subcommand per pipeline stage.

Each stage lives in ``mbmt.stages.<name>`` with ``add_arguments(parser)`` and ``main(args)``;
those modules import torch and the rest lazily, so ``mbmt --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from mbmt import __version__
from mbmt.errors import MbmtError

# name -> one-line help; the module mbmt.stages.<name> implements it.
STAGES = {
    "fetch": "get the raw dataset: download MTAN's NYUv2 archive (resumable, checksummed), "
             "take a local copy, or render the synthetic scenes",
    "weights": "get the ImageNet weights of the backbones that models with pretrained: true start from "
               "(Hugging Face Hub, its cache, or local files in params backbone_weights)",
    "preprocess": "validate the raw dataset and write one HDF5 file per split plus a manifest",
    "synth": "render synthetic NYUv2-like indoor scenes straight to HDF5 (or MTAN's .npy layout)",
    "train": "train one model (ST-Net, MT-Net, MBMT-Net variant or MTAN); resumes an interrupted run",
    "evaluate": "evaluate a trained model on a split and write the metrics JSON",
    "predict": "run a trained model on RGB images and write segmentation, depth and normal maps",
    "params": "print the parameter table of every model beside the paper's counts",
    "report": "write the paper's tables and figures to reports/",
    "config": "print the merged, validated parameters (params.yaml + presets)",
    "pull": "get the recorded outputs from the DVC remote (or cache) and make Snakemake see them as current",
    "dag": "write dvc.yaml from params.yaml and the stage definitions the Snakefile uses",
}
# The stages of the DAG: each first compares the installed environment with the lock
# (mbmt.environment.check), so `dvc repro` stops at its first job and a Snakemake job on another
# node at its own, as a local Snakemake run does before any (workflow/rules/dvc.smk).
PIPELINE_STAGES = ("fetch", "weights", "preprocess", "train", "evaluate", "report")


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``stage``'s module is imported and its arguments added."""
    parser = argparse.ArgumentParser(
        prog="mbmt",
        description="MBMT-Net reproduction: every pipeline stage as a subcommand. "
        "Settings come from params.yaml (and presets given with --params).",
    )
    parser.add_argument("--version", action="version", version=f"mbmt {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-p", "--params", action="append", metavar="FILE",
        help="parameter file; repeat to merge presets over it in order "
        "(default: params.yaml; e.g. -p params.yaml -p config/demo.yaml)",
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in STAGES.items():
        if name != stage:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"mbmt.stages.{name}")
        stage_parser = sub.add_parser(
            name, parents=[common], help=help_text, description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(stage_parser)
        stage_parser.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stage = next((a for a in argv if a in STAGES), None)
    args = build_parser(stage).parse_args(argv)
    try:
        if args.stage in PIPELINE_STAGES:
            from mbmt.environment import check

            check()
        with output_lock(args), gpu_claim(args):
            return int(args._main(args) or 0)
    except MbmtError as exc:
        print(f"mbmt {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mbmt {args.stage}: interrupted", file=sys.stderr)
        return 130


def output_lock(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The exclusive lock on what the stage writes (mbmt.locking), held while it runs.

    Under torchrun only rank 0 holds it: the other ranks of the same run write nothing of their own.
    """
    from mbmt.locking import OutputLock, stage_lock

    seed = None
    if args.stage in ("train", "evaluate"):
        from mbmt.config import job_seed, load_params

        seed = job_seed(load_params(args.params), args.seed)
    lock = stage_lock(args.stage, getattr(args, "model", None), seed)
    if lock is None or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    return OutputLock(*lock)


def gpu_claim(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """train and evaluate: on a node with several GPUs, the GPU this job claims (mbmt.gpus), held
    while it runs; nothing for the other stages, on one GPU, or where CUDA_VISIBLE_DEVICES is set."""
    if args.stage not in ("train", "evaluate"):
        return contextlib.nullcontext()
    from mbmt.config import load_params
    from mbmt.gpus import place
    from mbmt.plan import Plan

    # The job's own params: a study variant may train on another device than the main models.
    params = Plan(load_params(args.params)).job_params(args.model)
    return place(args.stage, params["train"]["device"]) or contextlib.nullcontext()

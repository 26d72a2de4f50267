"""The stage definitions both front ends share: the params keys and the code each stage depends on.

``workflow/rules/common.smk`` declares them as Snakemake inputs and params, ``dvc.yaml`` as DVC deps
and params (tests/test_dag.py compares the two), and the trainer hashes the same code files into a
run's identity (mbmt.training.checkpoint), so an edit that re-runs a stage also starts a fresh run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# Params keys each stage depends on, at key granularity; "{model}" is the job's model. A change
# of any other key re-runs nothing. Execution settings (train.device, train.num_workers) choose
# where and how fast, not what is computed, so they are left out, as mbmt.training.checkpoint's
# run fingerprint leaves them out.
STAGE_PARAMS = {
    "fetch": ["data.source", "data.height", "data.width", "data.nyuv2", "data.synthetic"],
    "preprocess": ["data.source", "data.height", "data.width", "data.real_images"],
    "train": ["seed", "train.epochs", "train.batch_size", "train.lr", "train.weight_decay",
              "train.lr_step", "train.lr_gamma", "train.weighting", "train.dwa_temperature",
              "train.augment", "train.steps_per_epoch", "train.val_every", "train.amp",
              "train.channels_last", "decoder", "backbone_weights", "models.{model}"],
    "evaluate": ["evaluate"],
    # data.real_images: whether the report draws the real frames (real.h5, which dvc.yaml cannot declare).
    "report": ["report", "data.real_images"],
}

# The code each stage runs, relative to the package (a folder stands for every file in it).
# Infrastructure (cli, config, dag, paths, io, errors, provenance) decides how a stage runs, not
# what it computes, and is left out so that e.g. a new CLI option does not retrain every model.
STAGE_CODE = {
    "fetch": ["stages/fetch.py", "data/__init__.py", "data/fetch.py", "data/hdf5.py",
              "data/mtan_layout.py", "data/synthetic.py", "tasks.py"],
    "preprocess": ["stages/preprocess.py", "data/__init__.py", "data/fetch.py", "data/hdf5.py",
                   "data/mtan_layout.py", "data/nyu_raw.py", "data/preprocess.py", "tasks.py"],
    "train": ["stages/train.py", "data/__init__.py", "data/augment.py", "data/dataset.py", "data/device_split.py",
              "data/hdf5.py", "evaluation", "losses.py", "metrics.py", "models", "tasks.py",
              "training"],
    "evaluate": ["stages/evaluate.py", "data/__init__.py", "data/augment.py", "data/dataset.py",
                 "data/hdf5.py", "evaluation", "losses.py", "metrics.py", "models", "tasks.py",
                 "training/__init__.py", "training/checkpoint.py", "training/distributed.py",
                 "training/weighting.py"],
    "report": ["stages/report.py", "data/__init__.py", "data/hdf5.py", "models", "paper.py",
               "predict.py", "reporting", "tasks.py"],
}

# Files DVC does not hash inside a folder dependency (.dvcignore lists the same).
IGNORED_NAMES = {"__pycache__"}
IGNORED_SUFFIXES = {".pyc"}


def code_files(stage: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The files of STAGE_CODE[stage] under ``package_dir``, folders expanded as DVC hashes them."""
    files = []
    for entry in STAGE_CODE[stage]:
        path = package_dir / entry
        if path.is_dir():
            files += [f for f in sorted(path.rglob("*")) if f.is_file()
                      and IGNORED_NAMES.isdisjoint(f.relative_to(path).parts)
                      and f.suffix not in IGNORED_SUFFIXES]
        else:
            files.append(path)
    return files


def code_digest(stage: str, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the stage's code files (their package-relative names and contents)."""
    digest = hashlib.sha256()
    for path in code_files(stage, package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()

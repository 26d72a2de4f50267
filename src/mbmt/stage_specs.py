"""What each stage is, whatever the params: the params keys it depends on, the code it runs (and
that code's digest), and the result-affecting packages of the lock it depends on.

Both front ends declare these (``workflow/rules/common.smk``; ``mbmt dag`` writes them into
``dvc.yaml``), and the trainer hashes the same code files into a run's identity
(mbmt.training.checkpoint), so an edit that re-runs a stage also starts a fresh run. Which jobs
the params make, and each job's params, are the plan's (mbmt.plan).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mbmt import environment
from mbmt.config import EXECUTION_PARAMS, TRAIN_RESULT_KEYS

PACKAGE_DIR = Path(__file__).resolve().parent

# Params keys each stage depends on, at key granularity; "{model}" is the job's model. A change
# of any other key re-runs nothing. The train keys are the result keys of mbmt.config.TRAIN_KEYS,
# the same that make a run's identity (mbmt.training.checkpoint); its execution keys choose where
# and how fast, not what is computed, and are left out. A job's seed is on its command line (--seed), not a params
# key: adding a seed to params `seeds` adds jobs and leaves the other seeds' jobs as they are.
STAGE_PARAMS = {
    "fetch": ["data.source", "data.height", "data.width", "data.nyuv2", "data.synthetic"],
    # Which backbones need weights is in the jobs (one per backbone), not a params key: a change of
    # another model's entry must not touch the weight files that every training depends on.
    "weights": ["backbone_weights"],
    "preprocess": ["data.source", "data.height", "data.width", "data.real_images"],
    # The train stage also reads train's execution keys (config.TRAIN_EXECUTION_KEYS) and deliberately does not
    # declare them: they change where and how fast, not what is computed, so a change re-runs no training and a
    # run resumes under another value (docs/workflow.md). tests/test_stage_reads.py ties both lists to the reads.
    "train": [f"train.{key}" for key in TRAIN_RESULT_KEYS] + ["decoder", "models.{model}"],
    # Evaluation runs as config.ExecutionSettings says (keys of params `train`): declared, as every key it reads.
    "evaluate": ["evaluate", *EXECUTION_PARAMS],
    # data.real_images: whether the report draws the real frames (real.h5); seeds: what it averages.
    "report": ["report", "data.real_images", "seeds"],
}

# The code each stage runs, relative to the package (a folder stands for every file in it).
# Infrastructure (cli, config, stage_specs, plan, environment, locking, paths, io, errors, provenance)
# decides how a stage runs, not what it computes, and is left out so that e.g. a new CLI option does
# not retrain every model.
STAGE_CODE = {
    "fetch": ["stages/fetch.py", "data/__init__.py", "data/archives.py", "data/fetch.py", "data/hdf5.py",
              "data/hub_mirror.py", "data/mtan_layout.py", "data/settings.py", "data/synthetic", "data/transfer.py",
              "hub.py", "tasks.py"],
    "weights": ["stages/weights.py", "hub.py", "models", "tasks.py"],
    "preprocess": ["stages/preprocess.py", "data/__init__.py", "data/archives.py", "data/fetch.py", "data/hdf5.py",
                   "data/hub_mirror.py", "data/mtan_layout.py", "data/nyu_raw.py", "data/preprocess.py",
                   "data/settings.py", "data/transfer.py", "hub.py", "tasks.py"],
    "train": ["stages/train.py", "data/__init__.py", "data/augment.py", "data/dataset.py",
              "data/device_split.py", "data/hdf5.py", "device.py", "evaluation", "hub.py", "losses.py",
              "metrics.py", "models", "tasks.py", "training"],
    "evaluate": ["stages/evaluate.py", "data/__init__.py", "data/augment.py", "data/dataset.py",
                 "data/hdf5.py", "device.py", "evaluation", "hub.py", "losses.py", "metrics.py", "models", "tasks.py"],
    "report": ["stages/report.py", "anchors.py", "data/__init__.py", "data/hdf5.py", "device.py", "evaluation",
               "hub.py", "losses.py", "metrics.py", "models", "paper.py", "predict.py", "reporting", "tasks.py", "visual.py"],
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


def stage_params(stage: str, model: str = "") -> list[str]:
    """The params keys of ``stage``, ``{model}`` filled in with ``model``."""
    return [key.format(model=model) for key in STAGE_PARAMS[stage]]


def environment_key(stage: str) -> str:
    """The key of ``stage``'s result-affecting locked packages in requirements/stages.yaml (its
    params in dvc.yaml, the same values in the Snakefile's; mbmt.environment)."""
    return f"{environment.STAGES_KEY}.{stage}"


def environment_params(stage: str, lock: str | Path = environment.BASE_LOCK) -> dict:
    """{environment_key(stage): the stage's result-affecting locked versions}: what the Snakefile
    tracks as a params value, and dvc.yaml reads from requirements/stages.yaml."""
    return {environment_key(stage): environment.stage_packages(stage, lock)}

"""Resumable training state: where a run lives, what identifies it, and its checkpoint file.

A run directory is ``runs/<model>/<fingerprint>/``; the fingerprint hashes everything that
determines the trained weights (the training code, the locked versions of the packages that can
change them, seed, training settings, the model's
architecture entry, the dataset's split files, the ImageNet weight files and the checkpoints it
starts from), so an edit of the
code or the params starts a fresh run and an interrupted run of the same code and settings
resumes. ``runs/`` is not a stage output: DVC and Snakemake delete a stage's outputs before
running it, and the state must survive that.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbmt.config import AS_WRITTEN, TRAIN_KEYS, ModelSettings, TrainSettings, fingerprint, imagenet_backbones, thaw
from mbmt.stage_specs import code_digest
from mbmt.environment import identity as environment_identity
from mbmt.errors import DataError, MbmtError
from mbmt.io import save_torch, sha256_file, write_json
from mbmt.paths import RUNS_DIR, model_file, split_file
from mbmt.training.weighting import weighting_name, weighting_options

CHECKPOINT_FILE = "checkpoint.pt"
SETTINGS_FILE = "settings.json"
CHECKPOINT_FORMAT = 1

# The result keys of params `train` (mbmt.config.TRAIN_KEYS) the run identity records as written;
# the weighting and its options, amp and channels_last enter run_settings in their own blocks.
RESULT_KEYS = tuple(key for key, entry in TRAIN_KEYS.items() if entry.recorded == AS_WRITTEN)


def dataset_identity() -> dict[str, str]:
    """The training and validation splits' sha256: the data a run's result depends on.

    Not the manifest, which also records when and from where the data was fetched: a re-fetch of
    the same data must not start a new run. (Split files of the same data are byte-identical.)
    """
    files = [split_file(split) for split in ("train", "test")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)}: processed split not found (run `mbmt preprocess` or `mbmt synth` first)")
    return {f.name: sha256_file(f) for f in files}


def imagenet_weights(entry: Mapping) -> dict[str, str]:
    """sha256 of each ImageNet weight file the model of params entry ``entry`` starts from
    (data/weights/), by backbone: other weights, from wherever they came, are another run."""
    from mbmt.models.pretrained import weight_file

    return {backbone: sha256_file(weight_file(backbone)) for backbone in imagenet_backbones(entry)}


def init_checkpoints(model: ModelSettings, seed: int) -> dict[str, str]:
    """sha256 of each trained model ``model`` starts from (MBMT-Net's init_from, the same seed's), by model name."""
    hashes = {}
    for source in model.entry.get("init_from") or ():
        path = model_file(source, seed)
        if not path.is_file():
            raise MbmtError(f"{path}: model {model.name!r} starts from the trained {source!r}; "
                            f"run `mbmt train {source} --seed {seed}` first")
        hashes[source] = sha256_file(path)
    return hashes


def run_settings(model: ModelSettings, train: TrainSettings, *, seed: int, tasks: tuple[str, ...], device_type: str,
                 world_size: int) -> dict:
    """Everything that determines a run's result, as JSON (its fingerprint names the run directory)."""
    weighting_keys = train.weighting_keys()
    weighting = weighting_name(tasks, weighting_keys)  # the strategy the trainer builds (one task: equal)
    cuda = device_type == "cuda"
    entry = thaw(model.entry)
    return {
        # The code of the train stage, the same files Snakemake and DVC declare (mbmt.stage_specs), so that
        # an edit which re-runs the stage also starts a fresh run instead of republishing the old
        # weights. It replaces the package version: a version bump alone computes nothing new, and
        # an edit without one does.
        "code": code_digest("train"),
        # The locked versions of the packages that can change the result (torch, its CUDA libraries,
        # timm, numpy, torchjd and its solvers: mbmt.environment), and any of them installed at
        # another version: an upgrade that re-runs the stage also starts a fresh run.
        "environment": environment_identity("train"),
        "model": model.name,
        "seed": seed,
        "train": {
            **{key: train.value(key) for key in RESULT_KEYS},
            "weighting": {"name": weighting, **weighting_options(weighting, weighting_keys)},
            "amp_bf16": bool(train.amp and cuda),
            "channels_last": train.value("channels_last"),
        },
        "device": device_type,
        "world_size": world_size,
        "architecture": entry,
        "decoder": thaw(model.decoder),
        "imagenet_weights": imagenet_weights(entry),
        "dataset": dataset_identity(),
        "init_checkpoints": init_checkpoints(model, seed),
    }


def run_directory(name: str, settings: dict, root: str | Path = RUNS_DIR) -> Path:
    return Path(root) / name / fingerprint(settings)


def write_settings(run_dir: Path, settings: dict) -> None:
    """The settings beside the state, so a human can tell run directories apart."""
    path = run_dir / SETTINGS_FILE
    if not path.is_file():
        write_json(path, settings)


def rng_state() -> dict[str, Any]:
    """The process's random generators, in types torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash leaves the previous checkpoint in place."""
    save_torch({"format": CHECKPOINT_FORMAT, **state}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and what to do
        raise MbmtError(f"{path}: unreadable training checkpoint ({type(exc).__name__}: {exc}); "
                        f"delete its run directory {path.parent} to start the run afresh") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise MbmtError(f"{path}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}; "
                        f"delete {path.parent} to start the run afresh")
    return state

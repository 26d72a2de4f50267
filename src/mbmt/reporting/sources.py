"""What the report reads, and where each of its numbers came from.

Every number comes from a pipeline file: metrics/<model>/seed<S>.{json,images.npz} (evaluate),
models/<model>/seed<S>/{model.pt, live/} (train), data/processed/{test,real}.h5 and manifest.json (preprocess). Each
file is named with its md5, the hash DVC 3 records for it in dvc.lock, so a number can be tied
to the pipeline revision that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mbmt import paths
from mbmt.errors import MbmtError
from mbmt import io
from mbmt.io import read_json


def file_digests(path: str | Path) -> dict[str, str]:
    """{"path", "md5", "sha256"} of a file: md5 is DVC's hash of it, sha256 what evaluate records."""
    return {"path": str(path), **io.file_digests(path, ("md5", "sha256"))}


def require(path: Path, produced_by: str) -> Path:
    if not path.exists():
        raise MbmtError(f"{path}: not found; the report needs it (run `{produced_by}` first)")
    return path


@dataclass
class Samples:
    """The first images of a split with their ground truth, channel-last (the figures' layout)."""

    split: str
    image: np.ndarray  # (N, H, W, 3) RGB in [0, 1]
    semantic: np.ndarray  # (N, H, W) class ids, -1 unlabelled
    depth: np.ndarray  # (N, H, W) metres, 0 missing
    normal: np.ndarray  # (N, H, W, 3), all-zero missing
    modalities: dict[str, str]  # modality -> ground_truth | derived | absent | rendered
    source: str
    file: dict[str, str]  # file_digests of the split file

    def __len__(self) -> int:
        return len(self.image)


def read_samples(split: str, count: int) -> Samples:
    """The first ``count`` samples of data/processed/<split>.h5."""
    import h5py

    from mbmt.data.hdf5 import MODALITIES, decode, read_attrs

    path = require(paths.split_file(split), "mbmt preprocess")
    attrs = read_attrs(path)
    with h5py.File(path, "r") as f:
        n = min(count, len(f["image"]))
        decoded = [decode({m: f[m][i] for m in MODALITIES}) for i in range(n)]
    stack = {m: np.stack([d[m] for d in decoded]) for m in MODALITIES}
    return Samples(split=split, image=stack["image"].transpose(0, 2, 3, 1), semantic=stack["semantic"],
                   depth=stack["depth"][:, 0], normal=stack["normal"].transpose(0, 2, 3, 1),
                   modalities=attrs["modalities"], source=attrs["source"], file=file_digests(path))


@dataclass
class SeedRun:
    """One trained model of one seed: its metrics, per-image rows and model file's record."""

    seed: int
    metrics: dict[str, Any]  # metrics/<name>/seed<seed>.json
    per_image: dict[str, np.ndarray]  # metrics/<name>/seed<seed>.images.npz
    meta: dict[str, Any]  # the model file's record without the weights (name, model, tasks, backbones, extra)
    files: dict[str, dict[str, str]]  # "metrics" / "per_image" / "model" -> file_digests

    def provenance(self) -> dict[str, Any]:
        """Where this run's numbers came from: files, evaluation, training."""
        context = self.metrics.get("context", {})
        training = self.meta.get("extra") or {}
        return {
            "seed": self.seed,
            **{f"{kind}_file": {k: digests[k] for k in ("path", "md5")} for kind, digests in self.files.items()},
            # The metrics were computed from the model file now in place (evaluate records its sha256).
            "metrics_match_model_file": context.get("checkpoint_sha256") == self.files["model"]["sha256"],
            "evaluation": {key: context.get(key) for key in
                           ("dataset", "split", "images", "resolution", "protocol", "k", "averaging",
                            "batch_size", "provenance")},
            "training": {key: training.get(key) for key in
                         ("input_size", "epochs", "train_seconds", "world_size", "provenance")},
        }


@dataclass
class ModelResult:
    """One model as the report sees it: its runs (one per seed), its size, and the first seed's
    predictions."""

    name: str
    runs: list[SeedRun]
    parameters: dict[str, int]  # trainable, total
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # split -> task -> (N, ...)

    @property
    def meta(self) -> dict[str, Any]:
        return self.runs[0].meta

    @property
    def tasks(self) -> list[str]:
        return list(self.meta["tasks"])

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The metrics of every seed, in params seeds order."""
        return [run.metrics for run in self.runs]

    @property
    def per_image(self) -> list[dict[str, np.ndarray]]:
        return [run.per_image for run in self.runs]

    def provenance(self) -> dict[str, Any]:
        return {"runs": [run.provenance() for run in self.runs], "parameters": self.parameters}


def read_model(name: str, seeds: list[int], samples: list[Samples]) -> ModelResult:
    """Model ``name``'s metrics, per-image rows and model files of every seed; its parameters
    counted and ``samples`` predicted (on the CPU) with the first seed's model."""
    import torch

    from mbmt.evaluation import read_per_image
    from mbmt.models import count_parameters, load_model
    from mbmt.models.factory import read_model_file
    from mbmt.predict import predict

    runs, model = [], None
    for seed in seeds:
        evaluate = f"mbmt evaluate {name} --seed {seed}"
        metrics_path = require(paths.metrics_file(name, seed), evaluate)
        per_image_path = require(paths.per_image_file(name, seed), evaluate)
        model_path = require(paths.model_file(name, seed), f"mbmt train {name} --seed {seed}")
        if model is None:
            model, meta = load_model(model_path, map_location="cpu")
        else:
            meta = read_model_file(model_path)
            meta.pop("state_dict")
        runs.append(SeedRun(seed=seed, metrics=read_json(metrics_path), per_image=read_per_image(per_image_path),
                            meta=meta, files={"metrics": file_digests(metrics_path),
                                              "per_image": file_digests(per_image_path),
                                              "model": file_digests(model_path)}))
    predictions = {s.split: predict(model, torch.from_numpy(s.image.transpose(0, 3, 1, 2).copy())) for s in samples}
    return ModelResult(name=name, runs=runs, parameters=count_parameters(model), predictions=predictions)


def read_dataset() -> dict[str, Any]:
    """The processed dataset's description (manifest.json) and its md5."""
    path = require(paths.manifest_file(), "mbmt preprocess")
    manifest = read_json(path)
    return {
        "manifest": {k: file_digests(path)[k] for k in ("path", "md5")},
        "source": manifest["source"].get("source"),
        "origin": manifest["source"].get("origin"),
        # Where a Hub mirror fed the run: its repository and the commit converted.
        "hub": {key: manifest["source"]["hub"][key] for key in ("repo_id", "revision")}
        if manifest["source"].get("hub") else None,
        "resolution": [manifest["height"], manifest["width"]],
        "splits": {split: {"file": entry["file"], "count": entry["count"], "modalities": entry["modalities"]}
                   for split, entry in manifest["splits"].items()},
    }

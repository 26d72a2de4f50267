"""ImageNet weights of the backbones, as a versioned input of the DAG (stage ``weights``).

For each backbone that a model with ``pretrained: true`` starts from (mbmt.config.imagenet_backbones),
``fetch_weights`` writes ``data/weights/<backbone>.safetensors`` and a record beside it
(``<backbone>.json``: timm's model and tag, where the file came from, its sha256 and size). The
trainings depend on those files, so DVC versions them like the dataset (`dvc push` / `mbmt pull`
give a collaborator or an offline compute node the same bytes) and a changed file re-runs exactly
the trainings that start from it. Nothing else reads timm's or the Hub's cache: what a run starts
from is what the DAG recorded, whatever tag another timm version would resolve.

Where a file comes from, in this order:

1. params ``backbone_weights[<backbone>]``: a local file (.safetensors, or a .pth/.bin state dict
   that is converted to safetensors);
2. the Hugging Face Hub, through ``huggingface_hub`` as timm itself downloads: timm's pretrained
   config of the name (``efficientnet_b2`` means its default tag, ``efficientnet_b2.ra_in1k`` that
   tag) gives the repository and file. The client's cache, ``HF_ENDPOINT``, ``HF_HOME``,
   ``HF_TOKEN``, proxies and ``HF_HUB_OFFLINE`` apply. A file whose Hub ETag is its sha256 (every
   LFS file) is verified against it;
3. timm's older torch.hub cache (``~/.cache/torch/hub/checkpoints``), for configs with a URL.

Whatever the source, the file must fit the backbone (every tensor of ``timm.create_model(name)``
present with its shape), and nothing is written unless it does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mbmt import hub, paths
from mbmt.errors import MbmtError
from mbmt.io import atomic_path, sha256_file, write_json

RECORD_FORMAT = 1
# timm's own preference when a Hub config names no file (timm.models._hub.load_state_dict_from_hf).
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(MbmtError):
    """No usable ImageNet weight file for a backbone."""


class _SourceFailed(Exception):
    """One source could not give the file; the message says why."""


@dataclass
class _Found:
    path: Path
    source: str  # backbone_weights | hub | torch-hub-cache
    detail: dict


def weight_file(backbone: str) -> Path:
    """The ImageNet weights of ``backbone`` as the DAG recorded them, or one error saying how to get them."""
    path = paths.weights_file(backbone)
    if not path.is_file():
        raise WeightsError(f"{path}: the ImageNet weights of backbone {backbone!r} are not there; run "
                           f"`mbmt weights {backbone}` (or the whole workflow), or `mbmt pull` to get them from the "
                           "DVC remote")
    return path


def fetch_weights(backbone: str, backbone_weights: Mapping[str, str]) -> dict:
    """Write ``data/weights/<backbone>.safetensors`` and its record from the first source that has
    the file (module docstring); returns the record. Raises WeightsError naming every source tried."""
    import timm

    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None:
        raise WeightsError(f"backbone {backbone!r}: timm {timm.__version__} knows no pretrained weights of that "
                           "name (see timm.list_pretrained()); set pretrained: false for the models that use it")
    tried = []
    found = None
    for source in (_from_params, _from_hub, _from_torch_hub_cache):
        try:
            found = source(backbone, cfg, backbone_weights)
        except _SourceFailed as exc:
            tried.append(str(exc))
            continue
        if found is not None:
            break
    if found is None:
        raise WeightsError(
            f"no ImageNet weights for backbone {backbone!r} (timm {cfg.architecture}.{cfg.tag}): "
            + "; ".join(tried) + f". Ways out: download the file where you have a network and set params "
            f"backbone_weights.{backbone} to it (a .safetensors or .pth of timm's {backbone}), or set pretrained: "
            "false for the models that use it (they then train from random weights, not the paper's setting)")
    return _publish(backbone, cfg, found)


# --- sources ---------------------------------------------------------------------------------------

def _from_params(backbone: str, cfg, backbone_weights: Mapping[str, str]) -> _Found | None:
    if backbone not in backbone_weights:
        return None
    path = Path(backbone_weights[backbone]).expanduser()
    if not path.is_file():
        # Explicit beats everything: a wrong path is an error, not a reason to download instead.
        raise WeightsError(f"params backbone_weights.{backbone}: {path} is not a file; give a .safetensors or .pth "
                           f"of timm's {backbone}, or remove the entry to download it from the Hugging Face Hub")
    return _Found(path, "backbone_weights", {"path": str(path.resolve())})


def _from_hub(backbone: str, cfg, backbone_weights) -> _Found | None:
    if not cfg.hf_hub_id:
        raise _SourceFailed(f"timm's config {cfg.architecture}.{cfg.tag} names no Hugging Face Hub repository")
    from huggingface_hub import constants

    repo, _, revision = cfg.hf_hub_id.partition("@")
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(HUB_FILENAMES)
    where = hub.describe(repo)
    reasons = []
    for filename in filenames:
        try:
            path = hub.download(repo, filename, revision=revision or None)
        except (hub.Missing, hub.Unavailable) as exc:
            # Either way timm's next choice may still be had: on the Hub, or (offline, or the Hub
            # unreachable) in the cache, where an earlier run may have put pytorch_model.bin only.
            reasons.append(str(exc))
            continue
        # hf_hub_download returns <cache>/snapshots/<commit>/<filename>.
        return _Found(path, "hub", {"hf_hub_id": repo, "revision": path.parent.name, "filename": filename,
                                    "endpoint": constants.ENDPOINT})
    raise _SourceFailed(f"{where}: {', '.join(reasons)}")


def _from_torch_hub_cache(backbone: str, cfg, backbone_weights) -> _Found | None:
    if not cfg.url:
        raise _SourceFailed("timm's older cache: the config has no URL")
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
    if not path.is_file():
        raise _SourceFailed(f"timm's older cache: {path} is not there")
    return _Found(path, "torch-hub-cache", {"path": str(path), "url": cfg.url})


# --- checking and writing --------------------------------------------------------------------------

def _read_state_dict(path: Path, what: str) -> dict:
    """The tensors of a weight file, through timm's loader (it unwraps "state_dict"/"model" keys)."""
    from timm.models import load_state_dict

    try:
        return load_state_dict(str(path), use_ema=False)
    except Exception as exc:  # safetensors and torch raise many types for a truncated or foreign file
        raise WeightsError(f"{what}: {path} is not a readable weight file (truncated or not a state dict: "
                           f"{hub.first_line(exc)})") from None


def _check_fits(backbone: str, state_dict: Mapping, what: str, path: Path) -> None:
    import timm
    import torch

    from mbmt.models.base import state_dict_mismatch

    with torch.random.fork_rng(devices=[]):  # building the reference must not move the global RNG
        expected = timm.create_model(backbone, pretrained=False).state_dict()
    # Extra tensors (e.g. another classifier) are harmless: the encoder loads what it has.
    missing = {key: value for key, value in expected.items()
               if key not in state_dict or state_dict[key].shape != value.shape}
    if missing:
        detail = state_dict_mismatch(missing, {k: v for k, v in state_dict.items() if k in missing})
        raise WeightsError(f"{what}: {path} does not hold the weights of timm's {backbone} ({detail}); give the "
                           f"file of that backbone")


def _publish(backbone: str, cfg, found: _Found) -> dict:
    """Check ``found`` and write it as data/weights/<backbone>.safetensors (bytes kept when it is
    safetensors already, so the sha256 is the Hub's) and its record, each atomically."""
    import timm

    what = {"backbone_weights": f"params backbone_weights.{backbone}", "hub": "the Hugging Face Hub",
            "torch-hub-cache": "timm's older cache"}[found.source]
    state_dict = _read_state_dict(found.path, what)
    _check_fits(backbone, state_dict, what, found.path)
    target = paths.weights_file(backbone)
    source_sha256 = sha256_file(found.path)
    copied = _is_safetensors(found.path)
    with atomic_path(target) as tmp:
        if copied:
            shutil.copyfile(found.path, tmp)
        else:
            from safetensors.torch import save_file

            save_file({key: value.contiguous() for key, value in state_dict.items()}, str(tmp))
    record = {
        "format": RECORD_FORMAT,
        "backbone": backbone,
        "timm_model": cfg.architecture,
        "timm_tag": cfg.tag,
        "timm_version": timm.__version__,
        "source": found.source,
        **found.detail,
        "source_sha256": source_sha256,
        "file": target.name,
        # A verbatim copy has the source's hash: hash a 100 MB file once, not twice.
        "sha256": source_sha256 if copied else sha256_file(target),
        "bytes": target.stat().st_size,
        "tensors": len(state_dict),
    }
    write_json(paths.weights_record(backbone), record)
    return record


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header ('{')."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"

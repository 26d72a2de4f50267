"""Build models from params, count their parameters, and save/load model files.

A model file (models/<name>/model.pt) is a ``torch.save``d dict holding everything needed to
rebuild the architecture without params.yaml, plus the weights::

    format, version   "mbmt-model", FILE_VERSION
    name              the params.yaml model name it was trained as
    model             that model's params entry (arch, backbone(s), ...)
    decoder           params ``decoder`` (widths, norm, backbone_head_conv)
    tasks             the model's tasks, in output order
    backbones         timm backbone names, in encoder order
    state_dict        the weights
    extra             free-form (the trainer records provenance and its summary here)

It loads with ``torch.load(weights_only=True)``: plain data and tensors, no pickled code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mbmt.config import ModelSettings, imagenet_backbones, thaw
from mbmt.errors import MbmtError
from mbmt.io import save_torch
from mbmt.models.base import TaskModel, load_weights
from mbmt.models.efficientps import EfficientPS
from mbmt.models.encoder import Encoder, pretrained_weights
from mbmt.models.mtan import SegNetMTAN
from mbmt.models.multibackbone import MultiBackboneEncoder
from mbmt.paths import model_file
from mbmt.tasks import TASKS

FILE_FORMAT = "mbmt-model"
FILE_VERSION = 2  # 2: every prediction layer is a PredictionLayers (the semantic 1 x 1 conv became predict.0)
ENCODER_ARCHS = ("st", "mt")  # single-encoder models whose encoder can initialise an MBMT-Net backbone


class _Builder:
    """Builds one params entry; ``load_init`` False: random weights, nothing read."""

    def __init__(self, name: str, entry: Mapping, decoder: Mapping, load_init: bool, seed: int | None):
        self.name, self.entry, self.decoder = name, entry, decoder
        self.load_init, self.seed = load_init, seed
        # Which encoders start from ImageNet weights is decided once, with the weights stage.
        self.imagenet = set(imagenet_backbones(entry))

    def encoder(self, backbone: str) -> Encoder:
        weights = pretrained_weights(backbone) if backbone in self.imagenet and self.load_init else None
        return Encoder(backbone, head_conv=self.decoder["backbone_head_conv"], weights=weights)

    def efficientps(self, encoder: nn.Module, tasks) -> EfficientPS:
        return EfficientPS(encoder, tasks, fpn_channels=self.decoder["fpn_channels"],
                           head_channels=self.decoder["head_channels"], norm=self.decoder["norm"])

    def st(self) -> TaskModel:
        return self.efficientps(self.encoder(self.entry["backbone"]), (self.entry["task"],))

    def mt(self) -> TaskModel:
        return self.efficientps(self.encoder(self.entry["backbone"]), TASKS)

    def mbmt(self) -> TaskModel:
        entry = self.entry
        init_from = entry["init_from"]
        if init_from is not None and len(init_from) != len(entry["backbones"]):
            raise MbmtError(f"models.{self.name}: init_from names {len(init_from)} models for "
                            f"{len(entry['backbones'])} backbones; give one ST model per backbone, or null")
        # Encoders initialised from ST-Nets skip ImageNet weights (imagenet_backbones): they are
        # overwritten anyway. An extra backbone of the same name as an ST encoder would still get them.
        backbones = [Encoder(b, head_conv=self.decoder["backbone_head_conv"]) if init_from else self.encoder(b)
                     for b in entry["backbones"]]
        if init_from is not None and self.load_init:
            if self.seed is None:
                raise TypeError(f"{self.name} starts from trained ST-Nets: give the seed they were trained with")
            for encoder, source in zip(backbones, init_from):
                load_encoder(encoder, source, self.seed, self.decoder, f"models.{self.name}.init_from")
        extra = None
        if entry["extra_backbone"] is not None:
            extra = self.encoder(entry["extra_backbone"])
        encoder = MultiBackboneEncoder(backbones, extra, channels=entry["fusion_channels"], fusion=entry["fusion"],
                                       freeze=entry["freeze"], norm=self.decoder["norm"])
        return self.efficientps(encoder, TASKS)

    def mtan(self) -> TaskModel:
        return SegNetMTAN(self.entry["filters"])

    def build(self) -> TaskModel:
        builders: dict[str, Callable[[], TaskModel]] = {"st": self.st, "mt": self.mt, "mbmt": self.mbmt,
                                                         "mtan": self.mtan}
        return builders[self.entry["arch"]]()


def build_model(name: str, entry: Mapping, decoder: Mapping, *, load_init: bool = False,
                seed: int | None = None) -> TaskModel:
    """The model of params entry ``entry`` (model ``name``). ``load_init``: load the initial
    weights the entry asks for (see create_model)."""
    return _Builder(name, entry, decoder, load_init, seed).build()


def create_model(model: ModelSettings, *, load_init: bool = True, seed: int | None = None) -> TaskModel:
    """The model of ``model`` (a params model, unpacked by its stage: mbmt.config.model_settings).
    ``load_init``: load its initial weights (ImageNet where ``pretrained``, from data/weights/; for
    MBMT ``init_from`` the encoders of the ST-Nets trained with ``seed``); False builds the same
    architecture with random weights (counting, or before load_state_dict)."""
    return build_model(model.name, thaw(model.entry), thaw(model.decoder), load_init=load_init, seed=seed)


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters())}


def backbone_names(entry: Mapping) -> list[str]:
    if entry["arch"] in ("st", "mt"):
        return [entry["backbone"]]
    if entry["arch"] == "mbmt":
        return list(entry["backbones"]) + ([entry["extra_backbone"]] if entry["extra_backbone"] else [])
    return []


def save_model(path: str | os.PathLike, model: TaskModel, *, settings: ModelSettings, extra: dict | None = None) -> None:
    """Write ``model`` (built from ``settings``) as a model file, atomically."""
    entry = thaw(settings.entry)
    record = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "name": settings.name,
        "model": entry,
        "decoder": thaw(settings.decoder),
        "tasks": list(model.tasks),
        "backbones": backbone_names(entry),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    save_torch(record, path)


def read_model_file(path: str | os.PathLike, map_location="cpu") -> dict:
    """The record of a model file (see the module docstring), checked to be one."""
    path = Path(path)
    if not path.is_file():
        raise MbmtError(f"{path}: model file not found")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MbmtError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
        raise MbmtError(f"{path}: not an mbmt model file (write it with mbmt.models.save_model / mbmt train)")
    if record.get("version") != FILE_VERSION:
        raise MbmtError(f"{path}: model file version {record.get('version')}, this code reads {FILE_VERSION}; "
                        f"retrain it with `mbmt train {record.get('name', 'MODEL')}`")
    return record


def load_model(path: str | os.PathLike, map_location="cpu") -> tuple[TaskModel, dict]:
    """The model of a model file and its metadata (everything but the weights).

    The architecture comes from the file alone, never from params.yaml, and nothing is downloaded.
    """
    record = read_model_file(path, map_location)
    model = build_model(record["name"], record["model"], record["decoder"])
    load_weights(model, record.pop("state_dict"), lambda detail: MbmtError(
        f"{path}: the weights do not fit the architecture it records, as this code builds it "
        f"({detail}); retrain it with `mbmt train {record['name']}`"))
    return model, record


def load_encoder(encoder: Encoder, source: str, seed: int, decoder: Mapping, key: str) -> None:
    """Copy the encoder of trained model ``source`` (models/<source>/seed<seed>/model.pt) into ``encoder``."""
    path = model_file(source, seed)
    if not path.is_file():
        raise MbmtError(f"{key}: {path} not found; train {source} first (mbmt train {source} --seed {seed}), "
                        f"or set {key}: null to start from ImageNet weights")
    record = read_model_file(path)
    arch, backbones = record["model"]["arch"], record["backbones"]
    head_conv = record["decoder"]["backbone_head_conv"]
    if arch not in ENCODER_ARCHS or backbones != [encoder.name] or head_conv != decoder["backbone_head_conv"]:
        raise MbmtError(
            f"{key}: {path} holds a {arch!r} model with backbones {backbones} "
            f"(decoder.backbone_head_conv={head_conv}), but this encoder is a single {encoder.name!r} with "
            f"backbone_head_conv={decoder['backbone_head_conv']}; retrain {source} with the current params")
    prefix = "encoder."
    weights = {k[len(prefix):]: v for k, v in record["state_dict"].items() if k.startswith(prefix)}
    load_weights(encoder, weights, lambda detail: MbmtError(
        f"{key}: the encoder weights in {path} do not fit {encoder.name!r} ({detail}); "
        f"retrain {source} with `mbmt train {source}`"))

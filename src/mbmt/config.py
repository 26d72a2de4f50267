"""Load, merge and validate the workflow parameters (params.yaml plus optional presets).

Presets (config/*.yaml) are partial files merged over params.yaml exactly as Snakemake merges
``--configfile`` over ``configfile:`` (nested mappings merge, everything else is replaced), and
the result is validated against one JSON schema, so both front ends accept the same files.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from mbmt.errors import ParamsError
from mbmt.paths import PARAMS_FILE

SCHEMA_RESOURCE = "schemas/params.schema.yaml"


def schema() -> dict:
    return yaml.safe_load(resources.files("mbmt").joinpath(SCHEMA_RESOURCE).read_text())


# --- What each `train` key is: the one classification ------------------------------------------

RESULT, EXECUTION = "result", "execution"
# How a run's identity (mbmt.training.checkpoint.run_settings) records a result key.
AS_WRITTEN = "as written"
WEIGHTING = "weighting"  # in the weighting block: the strategy and its options (mbmt.training.weighting.weighting_options)
EFFECTIVE = "effective"  # the value the process computes with (amp: bf16 autocast only on CUDA)


@dataclass(frozen=True)
class TrainKey:
    """A key of params `train`: a result key changes the trained weights or the published log, so it
    is part of a run's identity and re-runs the train stage; an execution key chooses where and how
    fast, not what is computed (at most the rounding), so a run may resume with another value."""

    kind: str  # RESULT or EXECUTION
    why: str
    recorded: str | None = None  # result keys: AS_WRITTEN, WEIGHTING or EFFECTIVE


# Every key of the schema's `train` section, in the schema's order (tests/test_train_keys.py fails
# when the schema gains a key that is not here). mbmt.training.checkpoint.RESULT_KEYS and
# mbmt.stage_specs.STAGE_PARAMS["train"] follow from it, and docs/training.md's and docs/workflow.md's lists.
TRAIN_KEYS = {
    "epochs": TrainKey(RESULT, "how long it trains", AS_WRITTEN),
    "batch_size": TrainKey(RESULT, "the samples of each update", AS_WRITTEN),
    "lr": TrainKey(RESULT, "Adam's step", AS_WRITTEN),
    "weight_decay": TrainKey(RESULT, "Adam's decay", AS_WRITTEN),
    "lr_step": TrainKey(RESULT, "the learning-rate schedule", AS_WRITTEN),
    "lr_gamma": TrainKey(RESULT, "the learning-rate schedule", AS_WRITTEN),
    "weighting": TrainKey(RESULT, "the task weights of a multi-task model (one task: weight 1)", WEIGHTING),
    "dwa_temperature": TrainKey(RESULT, "DWA's temperature (an option of weighting dwa)", WEIGHTING),
    "weighting_options": TrainKey(RESULT, "the other strategies' options (CAGrad's c, Nash-MTL's solver, ...)", WEIGHTING),
    "augment": TrainKey(RESULT, "the training batches", AS_WRITTEN),
    "steps_per_epoch": TrainKey(RESULT, "the updates of each epoch", AS_WRITTEN),
    "val_every": TrainKey(RESULT, "the published log's validation curves", AS_WRITTEN),
    "num_workers": TrainKey(EXECUTION, "augmentation randomness depends on (seed, epoch, index) only"),
    "device": TrainKey(EXECUTION, "the device type the process gets is recorded instead"),
    "amp": TrainKey(RESULT, "bf16 autocast, where it is active (CUDA)", EFFECTIVE),
    "channels_last": TrainKey(RESULT, "the memory layout, and so the kernels' rounding", EFFECTIVE),
    "split_on_device": TrainKey(EXECUTION, "the same batches, bit for bit on CPU"),
    "sync_every": TrainKey(EXECUTION, "the same losses and weights up to rounding"),
    "val_batch_size": TrainKey(EXECUTION, "validation's averages do not depend on its batching (the batch "
                                           "averages are over MTAN's test pairs)"),
    "compile": TrainKey(EXECUTION, "the same computation, fused"),
}
TRAIN_RESULT_KEYS = tuple(key for key, entry in TRAIN_KEYS.items() if entry.kind == RESULT)
TRAIN_EXECUTION_KEYS = tuple(key for key, entry in TRAIN_KEYS.items() if entry.kind == EXECUTION)


# --- Settings: what a stage hands the library, unpacked from params at the stage ---------------


def freeze(value: Any) -> Any:
    """``value`` (params' YAML types) read-only: mappings as MappingProxyType, lists as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A frozen value as the plain dicts and lists params had (JSON, torch.save, run identities)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how a stage runs a model, shared by every stage that does (train, evaluate): the
    device (auto | cpu | cuda), the memory layout, the DataLoader workers. The keys live in params
    `train` (EXECUTION_PARAMS); each stage that reads them declares them (mbmt.stage_specs.STAGE_PARAMS)."""

    device: str
    channels_last: bool
    num_workers: int

    @classmethod
    def from_train(cls, train: Mapping) -> ExecutionSettings:
        """From params' `train` section (not the whole params)."""
        return cls(**{field.name: train[field.name] for field in fields(cls)})


# The params keys of ExecutionSettings.
EXECUTION_PARAMS = tuple(f"train.{field.name}" for field in fields(ExecutionSettings))


@dataclass(frozen=True)
class TrainSettings:
    """Params `train`, read-only, as the trainer uses it: one field per TRAIN_KEYS key, those shared
    with other stages under ``execution``. Built from TRAIN_KEYS, so a schema key cannot be left out
    (tests/test_train_keys.py)."""

    execution: ExecutionSettings
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_step: int
    lr_gamma: float
    weighting: str
    dwa_temperature: float
    weighting_options: Mapping[str, Any]
    augment: Any
    steps_per_epoch: int | None
    val_every: int
    amp: bool
    split_on_device: bool
    sync_every: int | str
    val_batch_size: int | str
    compile: str

    @classmethod
    def from_train(cls, train: Mapping) -> TrainSettings:
        """From params' `train` section (not the whole params)."""
        shared = {field.name for field in fields(ExecutionSettings)}
        return cls(execution=ExecutionSettings.from_train(train),
                   **{key: freeze(train[key]) for key in TRAIN_KEYS if key not in shared})

    def value(self, key: str) -> Any:
        """The value of TRAIN_KEYS key ``key`` as params wrote it (plain dicts and lists)."""
        owner = self.execution if key in {field.name for field in fields(ExecutionSettings)} else self
        return thaw(getattr(owner, key))

    def weighting_keys(self) -> dict[str, Any]:
        """The keys the weighting is built from (TRAIN_KEYS recorded as WEIGHTING), as params wrote them:
        what mbmt.training.weighting reads, narrowed here."""
        return {key: self.value(key) for key, entry in TRAIN_KEYS.items() if entry.recorded == WEIGHTING}


@dataclass(frozen=True)
class ModelSettings:
    """One model of params: its name, its `models` entry and the shared `decoder`, read-only."""

    name: str
    entry: Mapping[str, Any]
    decoder: Mapping[str, Any]

    @classmethod
    def of(cls, name: str, entry: Mapping, decoder: Mapping) -> ModelSettings:
        return cls(name, freeze(entry), freeze(decoder))


def deep_merge(base: Mapping, overlay: Mapping) -> dict:
    """``overlay`` over ``base``: mappings merge recursively, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found (run from the project root, or pass --params FILE)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def load_params(files: Sequence[str | Path] | None = None) -> dict:
    """Merge ``files`` in order (default: params.yaml) and validate the result."""
    files = [Path(f) for f in (files or [PARAMS_FILE])]
    params: dict = {}
    for path in files:
        params = deep_merge(params, read_yaml(path))
    validate(params, source=" + ".join(str(f) for f in files))
    return params


def _key(path: Sequence) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One sentence naming the key, the value and the fix."""
    key = _key(error.absolute_path)
    value = error.instance
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        where = f"{key}." if error.absolute_path else ""
        names = ", ".join(f"'{where}{u}'" for u in unknown)
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {names}{hint}"
    if error.validator == "required":
        return f"{key}: {error.message} (add it; see params.yaml for the paper's value)"
    if error.validator == "type" and isinstance(value, str) and error.validator_value in ("number", "integer"):
        hint = ""
        try:
            float(value)
            hint = " — YAML reads 1e-4 as a string; write 1.0e-4"
        except ValueError:
            pass
        return f"{key}: {value!r} is a string, expected a {error.validator_value}{hint}"
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the alternative that got furthest rather than jsonschema's generic sentence.
        # The "or null" alternative is never the informative one for a non-null value.
        context = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        # Nor is an alternative of another type than the value ("'ftp://x' is not of type
        # 'object'") when an alternative of the value's type says what is wrong with it.
        fitting = [e for e in context if not (e.validator == "type" and not e.relative_path)]
        best = jsonschema.exceptions.best_match(fitting or context or error.context)
        return f"{key}: {value!r} is not allowed ({best.message})"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    detail = f" ({description})" if description else ""
    return f"{key}: {error.message}{detail}"


def validate(params: Mapping, source: str = str(PARAMS_FILE)) -> None:
    """Raise ParamsError naming every invalid key of ``params`` (read from ``source``)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ParamsError(f"{source}: invalid parameters:\n  {lines}")
    _validate_studies(params, source)


def variant_params(params: Mapping, study: str, variant: str) -> dict:
    """The params of ``variant`` of study ``study``: its override merged over ``params`` as a preset
    is (deep_merge), without the studies (a variant is not itself a study)."""
    merged = deep_merge(params, params["studies"][study]["variants"][variant])
    merged.pop("studies", None)
    return merged


def _validate_studies(params: Mapping, source: str) -> None:
    """What the schema cannot say of params `studies`: the baseline is one of the variants, the
    models are the params', and every variant's params are valid by the same schema."""
    problems = []
    for name, study in (params.get("studies") or {}).items():
        if study["baseline"] not in study["variants"]:
            problems.append(f"studies.{name}.baseline: {study['baseline']!r} is not one of its variants "
                            f"({', '.join(study['variants'])})")
        missing = [model for model in study["models"] if model not in params["models"]]
        if missing:
            problems.append(f"studies.{name}.models: {', '.join(missing)} not in params models")
    if problems:
        raise ParamsError(f"{source}: invalid parameters:\n  " + "\n  ".join(problems))
    for name, study in (params.get("studies") or {}).items():
        for variant in study["variants"]:
            validate(variant_params(params, name, variant), source=f"{source}, study {name} variant {variant}")


def backbone_keys(params: Mapping) -> list[tuple[str, str]]:
    """(params key, timm name) of every backbone the models name."""
    keys = []
    for model, entry in params["models"].items():
        if "backbone" in entry:
            keys.append((f"models.{model}.backbone", entry["backbone"]))
        keys += [(f"models.{model}.backbones[{i}]", name) for i, name in enumerate(entry.get("backbones") or [])]
        if entry.get("extra_backbone"):
            keys.append((f"models.{model}.extra_backbone", entry["extra_backbone"]))
    return keys


def validate_backbones(params: Mapping, source: str = str(PARAMS_FILE)) -> None:
    """Raise ParamsError naming every backbone timm does not know, with the closest names it does.

    Separate from validate: it imports timm (and torch), which the schema check does not need.
    """
    import difflib

    import timm

    keys = backbone_keys(params) + [
        (f"studies.{study}.variants.{variant}: {key}", name)
        for study, entry in (params.get("studies") or {}).items() for variant in entry["variants"]
        for key, name in backbone_keys(variant_params(params, study, variant))]
    unknown = [(key, name) for key, name in dict.fromkeys(keys) if not timm.is_model(name)]
    if unknown:
        known = timm.list_models()
        lines = []
        for key, name in unknown:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() lists them)"
            lines.append(f"{key}: {name!r} is not a timm model{hint}")
        raise ParamsError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines))


def model_params(params: Mapping, name: str) -> dict:
    try:
        return dict(params["models"][name])
    except KeyError:
        raise ParamsError(f"unknown model {name!r}; models in params: {', '.join(params['models'])}") from None


def model_settings(params: Mapping, name: str) -> ModelSettings:
    """Model ``name`` of ``params`` as its stage hands it to the library (unknown names fail here)."""
    return ModelSettings.of(name, model_params(params, name), params["decoder"])


def imagenet_backbones(entry: Mapping) -> list[str]:
    """The backbones of params model entry ``entry`` that start from ImageNet weights, in encoder
    order, repeats removed: the weights stage gets these, the model builder loads them. An
    MBMT-Net's encoders with ``init_from`` start from the trained ST-Nets instead; its extra
    backbone, if any, from ImageNet."""
    if not entry.get("pretrained"):
        return []
    if entry["arch"] in ("st", "mt"):
        names = [entry["backbone"]]
    elif entry["arch"] == "mbmt":
        names = ([] if entry["init_from"] else list(entry["backbones"])) + (
            [entry["extra_backbone"]] if entry["extra_backbone"] else [])
    else:
        names = []
    return list(dict.fromkeys(names))


def job_seed(params: Mapping, seed: int | None) -> int:
    """The seed a train or evaluate job runs with: ``seed`` (its --seed), one of params ``seeds``;
    None stands for the only one when there is one."""
    seeds = params["seeds"]
    if seed is None:
        if len(seeds) > 1:
            raise ParamsError(f"params seeds is {seeds}: give the job's seed with --seed (one of them)")
        return seeds[0]
    if seed not in seeds:
        raise ParamsError(f"--seed {seed} is not in params seeds {seeds}; add it there (and run `mbmt dag`) "
                          "or pick one of them")
    return seed


def fingerprint(obj: Any) -> str:
    """A short, stable hash of JSON-serialisable settings (used to key resumable state)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]

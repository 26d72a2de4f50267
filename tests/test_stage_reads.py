"""The params a stage reads are the params it declares, and the library below the stages is handed
settings, never the params dict.

The train and evaluate stages unpack their job's params at their boundary (``unpack`` of
mbmt.stages.train and mbmt.stages.evaluate); everything the library computes with comes from
there. Unpacking a params mapping that records every key path read shows what each stage depends
on, which must be what mbmt.stage_specs.STAGE_PARAMS declares (what re-runs it under DVC and Snakemake):
evaluate exactly its declared keys, train its declared keys and its execution keys (declared by
design as no trigger: mbmt.config.TRAIN_KEYS). Both also read the provenance labels
(mbmt.provenance.PROVENANCE_PARAMS), which name a run and compute nothing.
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mbmt.config import TRAIN_EXECUTION_KEYS, TRAIN_KEYS, ExecutionSettings, TrainSettings, model_params, model_settings
from mbmt.provenance import PROVENANCE_PARAMS

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "mbmt"


class Recording(Mapping):
    """A read-only view of params that logs the dotted path of every value read: a leaf when it is
    read, a mapping when it is read whole (iterated, copied, compared)."""

    def __init__(self, data: Mapping, reads: set[str], path: str = ""):
        self._data, self._reads, self._path = data, reads, path

    def _key(self, key) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def __getitem__(self, key):
        value = self._data[key]
        if isinstance(value, Mapping):
            return Recording(value, self._reads, self._key(key))
        self._reads.add(self._key(key))
        return value

    def __iter__(self) -> Iterator:
        self._reads.add(self._path or "(everything)")
        return iter(self._data)

    def __len__(self) -> int:
        self._reads.add(self._path or "(everything)")
        return len(self._data)


def covering(reads: set[str], declared: list[str]) -> tuple[set[str], set[str]]:
    """(the declared keys read, in whole or in part; the reads no declared key covers)."""
    def within(read: str, key: str) -> bool:  # the read is of the key or of a value inside it
        return read == key or read.startswith(key + ".")

    # A whole section read (e.g. "train") reads each declared key in it, but is itself undeclared.
    return ({key for key in declared if any(within(read, key) or within(key, read) for read in reads)},
            {read for read in reads if not any(within(read, key) for key in declared)})


def reads_of(unpack, params: dict, *args) -> set[str]:
    reads: set[str] = set()
    unpack(Recording(params, reads), *args)
    return reads


@pytest.mark.parametrize("model", ["mtnet", "st_de", "mbmt_partial"])
def test_the_evaluate_stage_reads_exactly_its_declared_params(tiny_params, model):
    from mbmt.plan import Plan
    from mbmt.stages.evaluate import unpack

    declared = Plan(tiny_params).params_keys("evaluate", model)
    read, undeclared = covering(reads_of(unpack, tiny_params), declared)
    assert undeclared == set(PROVENANCE_PARAMS), "the evaluate stage reads params it does not declare"
    assert read == set(declared), "the evaluate stage declares params it does not read"
    assert declared == ["evaluate", "train.device", "train.channels_last", "train.num_workers"]


@pytest.mark.parametrize("model", ["mtnet", "st_de", "mbmt_partial"])
def test_the_train_stage_reads_its_declared_params_and_its_execution_keys(tiny_params, model):
    from mbmt.plan import Plan
    from mbmt.stages.train import unpack

    declared = Plan(tiny_params).params_keys("train", model)
    execution = [f"train.{key}" for key in TRAIN_EXECUTION_KEYS]
    assert not set(declared) & set(execution)  # the execution keys re-run no training (docs/workflow.md)
    read, undeclared = covering(reads_of(unpack, tiny_params, model), declared + execution)
    assert undeclared == set(PROVENANCE_PARAMS), "the train stage reads params it does not declare"
    assert read == set(declared + execution), "the train stage declares params it does not read"


def test_the_recording_sees_a_read_of_an_undeclared_key(tiny_params):
    """The check above can fail: a library handed the whole params that reads train.device is caught."""
    from mbmt.plan import Plan

    def unpack(params):
        return params["evaluate"]["split"], params["train"]["device"]

    _, undeclared = covering(reads_of(unpack, tiny_params), Plan(tiny_params).params_keys("evaluate", "mtnet")[:1])
    assert undeclared == {"train.device"}


def test_settings_are_built_from_every_train_key_and_are_immutable(tiny_params):
    """TrainSettings holds each TRAIN_KEYS key exactly once (the shared ones under ``execution``),
    as params wrote it, and cannot be changed by whoever it is handed to."""
    import dataclasses

    own = {field.name for field in dataclasses.fields(TrainSettings)} - {"execution"}
    shared = {field.name for field in dataclasses.fields(ExecutionSettings)}
    assert not own & shared and own | shared == set(TRAIN_KEYS)
    train = tiny_params["train"]
    settings = TrainSettings.from_train(train)
    assert {key: settings.value(key) for key in TRAIN_KEYS} == {key: train[key] for key in TRAIN_KEYS}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lr = 1.0
    with pytest.raises(TypeError):
        settings.weighting_options["cagrad"] = {"c": 0.9}
    model = model_settings(tiny_params, "mtnet")
    with pytest.raises(TypeError):
        model.entry["backbone"] = "resnet18"
    assert settings.value("weighting_options") == train["weighting_options"]  # a copy: params are untouched


def old_train_identity(name: str, params: dict, tasks: tuple[str, ...], device_type: str) -> dict:
    """run_settings' params-derived blocks as they were built from the params dict before settings
    (the same expressions), for the comparison below."""
    from mbmt.training.checkpoint import RESULT_KEYS
    from mbmt.training.weighting import weighting_name, weighting_options

    train = params["train"]
    weighting = weighting_name(tasks, train)
    return {
        "model": name,
        "train": {
            **{key: train[key] for key in RESULT_KEYS},
            "weighting": {"name": weighting, **weighting_options(weighting, train)},
            "amp_bf16": bool(train["amp"] and device_type == "cuda"),
            "channels_last": train["channels_last"],
        },
        "architecture": model_params(params, name),
        "decoder": params["decoder"],
    }


def variants(params: dict) -> list[dict]:
    """params whose identities exercise every kind of value: nested options, lists, null, strings."""
    cagrad = copy.deepcopy(params)
    cagrad["train"].update(weighting="cagrad", weighting_options={"cagrad": {"c": 0.25}}, steps_per_epoch=None)
    constant = copy.deepcopy(params)
    constant["train"].update(weighting="constant", augment="mtan", amp=True, channels_last=True,
                             weighting_options={"constant": {"weights": {"semantic": 1.0, "depth": 2.0, "normal": 0.5}}})
    dwa = copy.deepcopy(params)
    dwa["train"].update(weighting="dwa", dwa_temperature=3.0, lr=1.0e-3)
    return [params, cagrad, constant, dwa]


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_the_run_identity_is_the_same_built_from_settings(tiny_params, monkeypatch, device_type):
    """The identity a run's directory is named by (its JSON, byte for byte, and so its fingerprint)
    is what it was when run_settings read the params dict, for single- and multi-task models."""
    from mbmt.config import fingerprint
    from mbmt.stages.train import unpack
    from mbmt.training import checkpoint

    outside = {"code": "c", "environment": {"e": 1}, "imagenet_weights": {"b": "w"}, "dataset": {"d": "s"},
               "init_checkpoints": {}}
    monkeypatch.setattr(checkpoint, "code_digest", lambda stage: outside["code"])
    monkeypatch.setattr(checkpoint, "environment_identity", lambda stage: outside["environment"])
    monkeypatch.setattr(checkpoint, "imagenet_weights", lambda entry: outside["imagenet_weights"])
    monkeypatch.setattr(checkpoint, "dataset_identity", lambda: outside["dataset"])
    monkeypatch.setattr(checkpoint, "init_checkpoints", lambda model, seed: outside["init_checkpoints"])
    for params in variants(tiny_params):
        for name, tasks in (("mtnet", ("semantic", "depth", "normal")), ("st_de", ("depth",))):
            job = unpack(params, name)
            new = checkpoint.run_settings(job.model, job.train, seed=3, tasks=tasks, device_type=device_type,
                                          world_size=2)
            old = {**outside, **old_train_identity(name, params, tasks, device_type), "seed": 3,
                   "device": device_type, "world_size": 2}
            assert list(new) == ["code", "environment", "model", "seed", "train", "device", "world_size",
                                 "architecture", "decoder", "imagenet_weights", "dataset", "init_checkpoints"]
            assert json.dumps(new) == json.dumps({key: old[key] for key in new})
            assert fingerprint(new) == fingerprint(old)


def test_no_library_function_takes_the_params_dict():
    """Below the stages (training, evaluation, models), no function has a ``params`` argument: each
    is handed settings or named values, unpacked at its stage."""
    offenders = []
    for folder in ("training", "evaluation", "models"):
        for path in sorted((PACKAGE_DIR / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                    if "params" in names:
                        offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} {node.name}")
    assert not offenders, f"library functions that take the params dict: {offenders}"

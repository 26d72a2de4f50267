"""params.yaml, presets and the schema: what is accepted, and how a mistake is reported."""

from __future__ import annotations

import pytest
import yaml

from mbmt.config import deep_merge, fingerprint, load_params, validate
from mbmt.errors import ParamsError

from conftest import REPO


def write(path, text):
    path.write_text(text)
    return path


def test_paper_params_and_presets_are_valid():
    paper = load_params([REPO / "params.yaml"])
    assert paper["data"]["source"] == "nyuv2"
    assert (paper["data"]["height"], paper["data"]["width"]) == (288, 384)
    assert paper["train"]["lr"] == 1.0e-4 and paper["train"]["epochs"] == 200
    demo = load_params([REPO / "params.yaml", REPO / "config" / "demo.yaml"])
    assert demo["data"]["source"] == "synthetic" and demo["profile"] == "demo"
    # A preset only overrides what it names; the rest stays the paper's.
    assert demo["models"]["mbmt_partial"]["init_from"] == paper["models"]["mbmt_partial"]["init_from"]
    assert demo["decoder"]["norm"] == paper["decoder"]["norm"]
    assert demo["models"]["mtnet"]["pretrained"] is False
    # The demo's smaller models (the report's architecture table says so): b0 and narrower decoders.
    assert demo["models"]["mtnet"]["backbone"] == "efficientnet_b0" != paper["models"]["mtnet"]["backbone"]
    assert demo["decoder"]["fpn_channels"] < paper["decoder"]["fpn_channels"]


def test_mtan_protocol_preset_sets_mtans_augmentation_and_reporting():
    paper = load_params([REPO / "params.yaml"])
    mtan = load_params([REPO / "params.yaml", REPO / "config" / "mtan-protocol.yaml"])
    assert mtan["train"]["augment"] == "mtan" and mtan["train"]["val_every"] == 1
    assert mtan["evaluate"] == {**paper["evaluate"], "protocol": "last_k", "k": 10, "averaging": "batch", "batch_size": 2}
    # MTAN's training is params.yaml's: only the augmentation differs, and the profile is kept.
    assert {**mtan["train"], "augment": paper["train"]["augment"]} == paper["train"]
    assert mtan["profile"] == paper["profile"] and mtan["models"] == paper["models"]
    assert mtan["train"]["epochs"] >= mtan["evaluate"]["k"]


def test_train_augment_accepts_its_modes_and_refuses_others(tmp_path):
    for value in (False, True, "mtan-like", "mtan"):
        load_params([REPO / "params.yaml", write(tmp_path / f"{value}.yaml", f"train: {{augment: {yaml.safe_dump(value).splitlines()[0]}}}\n")])
    with pytest.raises(ParamsError, match="train.augment"):
        load_params([REPO / "params.yaml", write(tmp_path / "bad.yaml", "train: {augment: bilinear}\n")])


def test_deep_merge_matches_snakemake_configfile_semantics():
    from snakemake.utils import update_config

    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    overlay = {"a": {"c": [3], "e": {"f": 2}}, "d": None}
    expected = yaml.safe_load(yaml.safe_dump(base))
    update_config(expected, overlay)
    assert deep_merge(base, overlay) == expected == {"a": {"b": 1, "c": [3], "e": {"f": 2}}, "d": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("train: {lrr: 0.1}", "unknown key 'train.lrr'"),
        ("train: {lr: 1e-4}", "train.lr: '1e-4' is a string, expected a number — YAML reads 1e-4 as a string; write 1.0e-4"),
        ("data: {height: 100}", "data.height: 100 is not a multiple of 32"),
        ("data: {source: kitti}", "data.source: 'kitti' is not one of ['nyuv2', 'synthetic']"),
        ("data: {nyuv2: {sha256: abc}}", "data.nyuv2.sha256: 'abc' is not of type 'object' (pinned checksums: source URL"),
        ("data: {nyuv2: {sha256: {'https://a/b.zip': abc}}}", "data.nyuv2.sha256.https://a/b.zip: 'abc' does not match '^[0-9a-f]{64}$'"),
        ("data: {nyuv2: {url: 'https://a/b.zip'}}", "unknown key 'data.nyuv2.url'; allowed here: local_path, sha256, sources"),
        ("data: {nyuv2: {sources: ['ftp://a/b.zip']}}", "data.nyuv2.sources.0: 'ftp://a/b.zip' is not allowed ('ftp://a/b.zip' does not match"),
        ("data: {nyuv2: {sources: [{train: 'https://a/t.zip'}]}}", "data.nyuv2.sources.0: {'train': 'https://a/t.zip'} is not allowed ('val' is a required property)"),
        ("data: {nyuv2: {sources: []}}", "data.nyuv2.sources: [] should be non-empty (where to download MTAN's NYUv2"),
        ("models: {mbmt_partial: {init_from: [st_xx]}}", "models.mbmt_partial.init_from: ['st_xx'] is not allowed ('st_xx' is not one of"),
        ("train: {epochs: 0}", "train.epochs: 0 is less than the minimum of 1"),
        ("train: {lr: 1.0e+8}", "train.lr: 100000000.0 is greater than the maximum of 1 (Adam's learning rate"),
        ("models: {mtan: {filters: [64, 128]}}", "models.mtan.filters: [64, 128] is too short"),
    ],
)
def test_invalid_params_name_the_key_and_the_fix(tmp_path, overlay, message):
    preset = write(tmp_path / "bad.yaml", overlay)
    with pytest.raises(ParamsError) as info:
        load_params([REPO / "params.yaml", preset])
    text = str(info.value)
    assert message in text
    assert str(preset) in text  # which files were merged


def test_every_error_is_reported_at_once(tmp_path):
    preset = write(tmp_path / "bad.yaml", "train: {lrr: 1, epochs: -1}\nseed: x\n")
    with pytest.raises(ParamsError) as info:
        load_params([REPO / "params.yaml", preset])
    assert len(str(info.value).splitlines()) == 4  # header + three problems


def test_missing_file_and_broken_yaml(tmp_path):
    with pytest.raises(ParamsError, match="parameter file not found"):
        load_params([tmp_path / "nope.yaml"])
    broken = write(tmp_path / "broken.yaml", "train: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params([broken])
    listing = write(tmp_path / "list.yaml", "- 1\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_params([listing])


def test_missing_key_is_named():
    params = load_params([REPO / "params.yaml"])
    del params["train"]["batch_size"]
    with pytest.raises(ParamsError, match="'batch_size' is a required property"):
        validate(params)


def test_fingerprint_is_stable_and_sensitive():
    a = {"lr": 1.0e-4, "epochs": 200}
    assert fingerprint(a) == fingerprint({"epochs": 200, "lr": 1.0e-4})
    assert fingerprint(a) != fingerprint({"lr": 2.0e-4, "epochs": 200})

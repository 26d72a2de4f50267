"""The plan (mbmt.plan) and the dvc.yaml writer (mbmt.dvc_yaml) compute what the module they
replaced computed, and a study variant that changes only `evaluate` shares its trainings.

tests/fixtures/dvc_yaml/ holds, for the paper's params, the demo's and the two study presets as
they were merged then (plans.json, with the stage specifications of that time), the dvc.yaml the
hand-written renderer wrote (<case>.yaml), each job's params (their fingerprints) and the studies'
members. The tests build the plan from those frozen params and specifications, so later edits of
params.yaml, a preset or a stage's code list do not move them. Quick tier: nothing runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mbmt import dvc_yaml, plan, stage_specs
from mbmt.config import fingerprint, load_params
from mbmt.plan import Plan

FIXTURES = Path(__file__).parent / "fixtures" / "dvc_yaml"
FROZEN = json.loads((FIXTURES / "plans.json").read_text())
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def frozen_specs(monkeypatch):
    """The stage specifications as they were when the fixtures were written."""
    monkeypatch.setattr(stage_specs, "STAGE_PARAMS", FROZEN["stage_params"])
    monkeypatch.setattr(plan, "STAGE_PARAMS", FROZEN["stage_params"])
    monkeypatch.setattr(dvc_yaml, "STAGE_CODE", FROZEN["stage_code"])


@pytest.mark.parametrize("case", sorted(FROZEN["cases"]))
def test_dvc_yaml_holds_what_the_hand_written_renderer_wrote(case, frozen_specs):
    """The same stages, commands, deps, outs, params, metrics and plots, as YAML loads them."""
    params = FROZEN["cases"][case]["params"]
    old = yaml.safe_load((FIXTURES / f"{case}.yaml").read_text())
    new = yaml.safe_load(dvc_yaml.render_dvc_yaml(Plan(params)))
    assert new == old
    # The writer's output is what its content says (the header is comments only).
    assert new == dvc_yaml.dvc_yaml(Plan(params))


@pytest.mark.parametrize("case", sorted(FROZEN["cases"]))
def test_each_jobs_params_and_the_studies_members_are_unchanged(case, frozen_specs):
    """Every job, in order, runs with the same params (so the same run identity) as before, and each
    study's (variant, model) is run by the same job."""
    frozen = FROZEN["cases"][case]
    built = Plan(frozen["params"])
    assert {name: fingerprint(built.job_params(name)) for name in built.job_names} == frozen["job_params"]
    assert list(built.job_names) == list(frozen["job_params"])
    assert {study: built.study_members(study) for study in built.studies} == frozen["members"]


def test_the_committed_presets_plan_as_before_where_unchanged():
    """The fixture cases are the presets' merged params as they were: the live ones still merge to
    the same params unless a preset was edited since (then only the frozen comparison applies)."""
    for case, frozen in FROZEN["cases"].items():
        if load_params([REPO / f for f in frozen["files"]]) == frozen["params"]:
            assert list(Plan(frozen["params"]).job_names) == list(frozen["job_params"]), case


# A study of MT-Net whose second variant changes only how it is evaluated.
EVALUATE_ONLY = {"weighting": {"baseline": "dwa", "models": ["mtnet"], "variants": {
    "dwa": {}, "batch": {"evaluate": {"averaging": "batch"}}, "equal": {"train": {"weighting": "equal"}},
    "equal_batch": {"train": {"weighting": "equal"}, "evaluate": {"averaging": "batch"}}}}}


def evaluate_only_params() -> dict:
    params = copy.deepcopy(load_params([REPO / "params.yaml"]))
    params["studies"] = copy.deepcopy(EVALUATE_ONLY)
    return params


def test_an_evaluate_only_variant_evaluates_the_shared_trainings():
    """Variant batch (evaluate only) adds an evaluate job per model of its closure (MT-Net and the
    ST-Nets the table compares with), each reading the main model's training, and no training;
    equal_batch shares equal's new MT-Net training, and the main ST-Nets' (whose training a
    weighting does not change)."""
    built = Plan(evaluate_only_params())
    members = built.study_members("weighting")
    st_nets = built.single_task_models
    batch = {model: f"{model}-weighting-batch" for model in [*st_nets, "mtnet"]}
    assert members["batch"] == batch
    assert {built.training(job) for job in batch.values()} == {*st_nets, "mtnet"}
    assert [built.training(job) for job in batch.values()] == [*st_nets, "mtnet"]
    assert members["equal"] == {**{st: st for st in st_nets}, "mtnet": "mtnet-weighting-equal"}
    equal_batch = members["equal_batch"]
    assert built.training(equal_batch["mtnet"]) == "mtnet-weighting-equal"
    assert {built.training(equal_batch[st]) for st in st_nets} == set(st_nets)
    # Only equal trains something new; the evaluate-only jobs are evaluated but not trained.
    assert [job for job in built.trained_jobs if job in built.study_jobs] == ["mtnet-weighting-equal"]
    assert set(built.job_names) - set(built.trained_jobs) == {*batch.values(), *equal_batch.values()}
    assert {name for name, _ in built.training_runs} == set(built.trained_jobs)
    # The job evaluates under its variant's params and depends on its variant's override.
    job = batch["mtnet"]
    assert built.job_params(job)["evaluate"]["averaging"] == "batch"
    assert built.params_keys("evaluate", job) == [*stage_specs.STAGE_PARAMS["evaluate"], "studies.weighting.variants.batch"]
    # dvc.yaml: no training stage for them; each evaluate item names the training whose model file it reads.
    content = dvc_yaml.dvc_yaml(built)
    trainings = {*content["stages"]["train"]["foreach"], *content["stages"].get("train_from_st", {}).get("foreach", {})}
    assert not {key for key in trainings if "-batch-" in key}
    item = content["stages"]["evaluate"]["foreach"][f"{job}-0"]
    assert item["training"] == "mtnet"
    assert "models/${item.training}/seed${item.seed}/model.pt" in content["stages"]["evaluate"]["do"]["deps"]
    # The report reads their metrics, and the trainings' model files once.
    inputs = {str(path) for path in built.report_inputs}
    assert f"metrics/{job}/seed0.json" in inputs and not any(f"models/{job}/" in path for path in inputs)


def test_the_evaluate_stage_of_an_evaluate_only_job_reads_the_shared_model_file(tmp_path, monkeypatch):
    """`mbmt evaluate mtnet-weighting-batch` evaluates models/mtnet/ (the shared training) under its
    variant's evaluate settings and writes its own metrics, which the study tables read."""
    import argparse

    import numpy as np

    import mbmt.evaluation
    from mbmt.paths import metrics_file, per_image_file
    from mbmt.stages import evaluate

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(evaluate_only_params(), sort_keys=False))
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_evaluation(name, seed, *, settings, execution, labels):
        calls.append((name, seed, settings.averaging))
        return {"context": {"images": 1, "split": "test"}}, {"index": np.arange(1)}

    monkeypatch.setattr(mbmt.evaluation, "evaluate_model_file", fake_evaluation)
    assert evaluate.main(argparse.Namespace(params=["params.yaml"], model="mtnet-weighting-batch", seed=0)) == 0
    assert calls == [("mtnet", 0, "batch")]
    assert metrics_file("mtnet-weighting-batch", 0).is_file() and per_image_file("mtnet-weighting-batch", 0).is_file()
    calls.clear()
    assert evaluate.main(argparse.Namespace(params=["params.yaml"], model="mtnet-weighting-equal", seed=0)) == 0
    assert calls == [("mtnet-weighting-equal", 0, "pixel")]

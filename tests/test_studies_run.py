"""Both study presets (config/studies/) run in both front ends on the tiny preset, and adding a
variant then plans only its jobs (docs/workflow.md, "Studies").

Kept lean for the slow tier: one seed, one epoch of one step, and of each preset its baseline and
other variants (DWA; FAMO, whose step recomputes the losses after the update; FairGrad, a gradient
method: a backward per task and a solve; the paper's backbones and EfficientNet-b0). DVC runs the
evaluations of every (variant, model) of both studies, not the main models' report; the study
tables are then built from what they wrote. Snakemake runs the whole DAG, the report included, and
its HTML report (snakemake --report) must hold both figures of every study, named, beside the
study tables. Every backbone of the backbones preset is checked against the project's encoder
(timm features_only) on its own.
"""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path

import pytest
import yaml
from test_workflow_project import (REPO, SNAKEMAKE_FAST, TINY, commit, copy_of, copy_project, dry_run_jobs,
                                   dvc_changed, embedded, init_git_dvc, planned, run)

from mbmt import paths
from mbmt.config import load_params, read_yaml
from mbmt.plan import Plan, job_name

pytestmark = pytest.mark.slow

WEIGHTING, BACKBONES = "weighting", "backbones"
KEEP = {WEIGHTING: ["dwa", "famo", "fairgrad"], BACKBONES: ["paper", "efficientnet_b0"]}
ADDED = ("hot", {"train": {"dwa_temperature": 4.0}})  # a third weighting variant, added after the run


def study_params(keep: dict[str, list[str]]) -> dict:
    """The tiny preset with both study presets, their variants cut to ``keep``, trained for one step."""
    params = load_params([REPO / "params.yaml", TINY, REPO / "config/studies/weighting.yaml",
                          REPO / "config/studies/backbones.yaml"])
    params["train"].update(epochs=1, steps_per_epoch=1)
    for name, variants in keep.items():
        study = params["studies"][name]
        study["variants"] = {v: study["variants"][v] for v in variants}
    return params


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["mbmt", "dag"], root)


def targets(params: dict) -> list[str]:
    """Every (variant, model) evaluation of every study (their trainings follow)."""
    jobs = {job for name in Plan(params).studies for variant in Plan(params).study_members(name).values()
            for job in variant.values()}
    return sorted(jobs)


def study_tables(root: Path, params: dict) -> dict:
    """The study tables as the report stage builds them from what the run wrote in ``root``."""
    from mbmt.reporting.build import build_study_tables, read_studies
    from mbmt.stages.report import report_settings

    settings = report_settings(params)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        found = read_studies(settings.studies, settings.seeds)
        return {table.name: table for table in build_study_tables(found, settings.single_task, settings.bootstrap)}
    finally:
        os.chdir(cwd)


def check_tables(root: Path, params: dict) -> None:
    tables = study_tables(root, params)
    assert set(tables) == {f"study_{WEIGHTING}", f"study_{WEIGHTING}_paired", f"study_{BACKBONES}",
                           f"study_{BACKBONES}_paired"}
    for name in (WEIGHTING, BACKBONES):
        table = tables[f"study_{name}"]
        assert len(table.rows) == len(KEEP[name]) * 2  # variants x models
        assert table.column("job")  # Δm may be undefined: one training step leaves some ST metrics at 0
        assert tables[f"study_{name}_paired"].rows  # the other variant against the baseline


# Each study's two figures (reporting/build.py draw_study_figures) and their labels in the HTML
# report (workflow/rules/common.smk report_figure_labels).
STUDY_FIGURES = {"tasks": "per-task Δm of each variant", "tradeoff": "trade-off between two tasks"}


def check_html_report(root: Path, params: dict, report: Path) -> None:
    """Snakemake's HTML report of the run in ``root`` holds both figures of every study, each as the
    file reports/ holds, labelled and filed under "Studies", beside the study tables."""
    run(["snakemake", "--report", str(report)], root)
    data = embedded(report)
    expected = {f"reports/figures/study_{name}_{plot}.png": f"study {name}: {what}"
                for name in Plan(params).studies for plot, what in STUDY_FIGURES.items()}
    assert len(expected) == 2 * len(KEEP)
    shown = {path for path in data["results"] if path.startswith("reports/figures/study_")}
    assert shown == set(expected), f"study figures in the HTML report: {sorted(shown)}; expected {sorted(expected)}"
    index = (root / "reports" / "README.md").read_text()
    for path, label in expected.items():
        result = data["results"][path]
        assert base64.b64decode(result["data_uri"].split("base64,", 1)[1]) == (root / path).read_bytes(), path
        assert result["labels"] == {"figure": label}, path
        assert path.removeprefix("reports/") in index, path  # and listed in reports/README.md
    assert data["categories"]["Studies"] == {
        f"Study {name}": sorted(path for path in expected if path.startswith(f"reports/figures/study_{name}_"))
        for name in Plan(params).studies}
    tables = {f"reports/tables/study_{name}{suffix}.html" for name in Plan(params).studies for suffix in ("", "_paired")}
    assert tables <= set(data["results"])


def with_added_variant(params: dict) -> dict:
    params = copy.deepcopy(params)
    params["studies"][WEIGHTING]["variants"][ADDED[0]] = ADDED[1]
    return params


ADDED_JOBS = {f"{stage}@{model}-{WEIGHTING}-{ADDED[0]}-0" for stage, model in
              (("train", "mtnet"), ("train_from_st", "mbmt_partial"), ("evaluate", "mtnet"), ("evaluate", "mbmt_partial"))}


def test_every_backbone_of_the_preset_builds_the_projects_encoder():
    import torch

    from mbmt.models.encoder import Encoder

    variants = read_yaml(REPO / "config/studies/backbones.yaml")["studies"][BACKBONES]["variants"]
    names = {entry["backbone"] for override in variants.values() for entry in (override.get("models") or {}).values()
             if "backbone" in entry}
    assert names == {"efficientnet_b0", "efficientnet_b2", "efficientnet_b4", "resnet50", "convnext_tiny"}
    for name in sorted(names):
        encoder = Encoder(name, head_conv=True)
        features = encoder(torch.zeros(1, 3, 64, 64))
        assert [f.shape[-1] for f in features] == [16, 8, 4, 2], name  # strides 4, 8, 16, 32


MAIN = ["st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial"]  # what both baselines (dwa, paper) run: the main models


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict]:
    """A git + DVC project with both studies whose main models (the baselines' jobs) have run under
    Snakemake and are recorded for DVC; each front end then runs the studies' own jobs in a copy."""
    root = copy_project(tmp_path_factory.mktemp("studies") / "project")
    params = study_params(KEEP)
    write_params(root, params)
    init_git_dvc(root)
    # The targets first: --set-threads takes a list.
    run(["snakemake", *(str(paths.metrics_file(name, 0)) for name in MAIN), *SNAKEMAKE_FAST], root)
    stages = ["fetch", "preprocess", *(stage for name in MAIN for stage in job_stages(params, name))]
    run(["dvc", "commit", "--no-relink", "--force", *stages], root)
    commit(root, "main models")
    return root, params


@pytest.fixture
def project(base, tmp_path) -> tuple[Path, dict]:
    root, params = base
    return copy_of(root, tmp_path / "project"), params


def job_stages(params: dict, job: str) -> list[str]:
    """The training and the evaluation of ``job`` (seed 0), named as DVC names them."""
    training = "train_from_st" if Plan(params).init_from(job) else "train"
    return [job_name(training, job, 0), job_name("evaluate", job, 0)]


def study_stages(params: dict) -> set[str]:
    """The train and evaluate stages of the studies' own jobs (not the main models')."""
    return {stage for job in Plan(params).study_jobs for stage in job_stages(params, job)}


def test_studies_run_with_snakemake_into_the_html_report_and_a_new_variant_plans_only_its_jobs(project, tmp_path):
    root, params = project
    files = [str(paths.metrics_file(job, 0)) for job in targets(params)]
    # Only the studies' own jobs run: the baselines' are the main models, already there.
    assert set(dry_run_jobs(run(["snakemake", "--dry-run", "--cores", "1", *files], root).stdout)) == study_stages(params)
    # The whole DAG: the studies' jobs, the other main models (one step each) and the report.
    run(["snakemake", *SNAKEMAKE_FAST], root)
    check_tables(root, params)
    check_html_report(root, params, tmp_path / "report.html")
    write_params(root, with_added_variant(params))
    others = {job_name(s, m, 0) for s in ("train", "train_from_st", "evaluate")
              for m in ("mtan", "mbmt_full_pretrained", "mbmt_full_scratch")}
    assert planned(root) - others - {"report"} == ADDED_JOBS


def test_studies_run_with_dvc_and_a_new_variant_plans_only_its_jobs(project):
    root, params = project
    assert study_stages(params) <= dvc_changed(root)
    run(["dvc", "repro", *(job_name("evaluate", job, 0) for job in targets(params))], root)
    check_tables(root, params)
    before = dvc_changed(root)  # what was not asked for: the other main models, the report
    assert not before & study_stages(params)
    write_params(root, with_added_variant(params))
    assert dvc_changed(root) - before == ADDED_JOBS

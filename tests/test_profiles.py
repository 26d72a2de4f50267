"""The Snakemake profiles parse, and a dry run with each plans the pipeline's jobs and resources."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest
from test_workflow_project import copy_project, dry_run_jobs, run

GPU_RULES = ("train", "train_from_st", "evaluate")
EXPECTED_JOBS = {"fetch": 1, "preprocess": 1, "train": 6, "train_from_st": 2, "evaluate": 8, "report": 1, "all": 1}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("profiles") / "project")


def job_stats(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_default_profile_is_loaded(project, monkeypatch):
    from snakemake.cli import parse_args

    monkeypatch.chdir(project)
    _, args = parse_args(["--dry-run"])
    assert args.cores == os.cpu_count()  # cores: all
    assert args.resources["gpu_mem_gb"].value == 80  # jobs share the GPU's memory
    assert "gpu" not in args.resources  # not one GPU job at a time
    assert args.keep_going and args.rerun_incomplete


def test_default_profile_plans_the_pipeline(project):
    result = run(["snakemake", "--dry-run"], project)
    output = result.stdout + result.stderr
    assert "Using workflow specific profile profiles/default" in output
    assert job_stats(output) == EXPECTED_JOBS
    jobs = dry_run_jobs(output)
    for name, resources in jobs.items():
        assert (resources.get("gpu") == "1") == (name.split("@")[0] in GPU_RULES), name
        assert ("gpu_mem_gb" in resources) == (name.split("@")[0] in GPU_RULES), name
    # Of the paper's params: the six trainings straight from the data fit on the GPU at once.
    trainings = [int(r["gpu_mem_gb"]) for name, r in jobs.items() if name.startswith("train@")]
    assert len(trainings) == 6 and sum(trainings) <= 80
    # One thread per training and evaluation (Snakemake prints a job's threads above 1 only).
    blocks = re.split(r"\n(?=\[.*\]\n(?:local)?rule )", output)
    threaded = {block.split("rule ", 1)[1].split(":", 1)[0] for block in blocks if "    threads: " in block}
    assert threaded == {"preprocess", "report"}


def test_slurm_profile_requests_gpus_per_rule(project):
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), (
        "snakemake-executor-plugin-slurm is not installed: pip install -e '.[dev]' (or '.[slurm]')")
    result = run(["snakemake", "--workflow-profile", "profiles/slurm", "--dry-run"], project)
    output = result.stdout + result.stderr
    assert "profiles/default" not in output  # the slurm profile replaces the local one
    assert job_stats(output) == EXPECTED_JOBS
    jobs = dry_run_jobs(output)
    for name, resources in jobs.items():
        rule = name.split("@")[0]
        assert (resources.get("gpu") == "1") == (rule in GPU_RULES), name
        if rule in ("train", "train_from_st"):
            assert resources["runtime"] == "2880" and resources["mem_mb"] == "64000", name

"""Sweeps the DVC way (docs/workflow.md): in a git + DVC copy of the project on the tiny preset,
after a whole `snakemake` run (recorded for DVC), two experiments queued with
`dvc exp run --queue -S train.dwa_temperature=...` both run once `dvc queue start` starts them (in
DVC's temporary workspaces), and `dvc exp show` lists both with their parameters and metrics: the
evaluation's metrics file and DVCLive's training summary. One is then kept as the docs say
(`dvc exp apply`, `dvc repro`, `mbmt pull --checkout`), after which neither front end has anything
to run. To stay fast, the experiments reproduce MT-Net's evaluation (and what it needs) only."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from test_workflow_project import SNAKEMAKE_FAST, commit, copy_project, dvc_changed, init_git_dvc, planned, run

from mbmt import paths
from mbmt.plan import Plan, job_name
from mbmt.config import load_params
from mbmt.io import sha256_file

pytestmark = pytest.mark.slow

MODEL = "mtnet"  # multi-task: DWA's temperature changes how its losses are weighted
EPOCHS = 3  # DWA weighs from the third epoch on (the first two have no loss history)
TARGET = job_name("evaluate", MODEL, 0)
TEMPERATURES = (1.0, 8.0)
METRICS_FILE = str(paths.metrics_file(MODEL, 0))
TASKS = ("semantic", "depth", "normal")
LIVE_SUMMARY = f"{paths.live_dir(MODEL, 0)}/metrics.json"


def wait_for_queue(root: Path, timeout: float = 600) -> str:
    """`dvc queue status` once no experiment is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], root).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(2)
    pytest.fail(f"the queued experiments did not finish in {timeout} s:\n{status}")


def experiments(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json`'s experiments (not the baseline commits): name -> data."""
    return {rev["name"]: rev["data"] for commit in shown for exp in commit.get("experiments") or []
            for rev in exp["revs"]}


def test_queued_experiments_run_and_show_with_their_metrics(tmp_path):
    root = copy_project(tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = EPOCHS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_git_dvc(root)
    run(["snakemake", *SNAKEMAKE_FAST], root)  # the baseline, recorded for DVC; the experiments reuse its data
    commit(root, "baseline")
    for temperature in TEMPERATURES:
        run(["dvc", "exp", "run", "--queue", "-S", f"train.dwa_temperature={temperature}", TARGET], root)
    try:
        run(["dvc", "queue", "start"], root)
        status = wait_for_queue(root)
    finally:
        run(["dvc", "queue", "stop"], root, check=False)
    assert status.count("Success") == len(TEMPERATURES), status

    found = experiments(json.loads(run(["dvc", "exp", "show", "--json"], root).stdout))
    assert len(found) == len(TEMPERATURES), found.keys()
    by_temperature = {data["params"]["params.yaml"]["data"]["train"]["dwa_temperature"]: data
                      for data in found.values()}
    assert sorted(by_temperature) == sorted(TEMPERATURES)
    results = {}
    for temperature, data in by_temperature.items():
        metrics = data["metrics"]
        evaluation, summary = metrics[METRICS_FILE]["data"], metrics[LIVE_SUMMARY]["data"]
        assert evaluation["context"]["split"] == "test", temperature
        assert summary["step"] == EPOCHS - 1, temperature  # the last epoch's values
        results[temperature] = (evaluation["depth"]["abs_err"], summary["train"]["weight"]["depth"])
    # Each experiment trained with its own temperature: different task weights, different results.
    assert results[TEMPERATURES[0]] != results[TEMPERATURES[1]]
    # The workspace is the baseline's, untouched.
    assert "dwa_temperature: 2.0" in (root / "params.yaml").read_text()

    # Keeping one (docs/workflow.md): its params and outputs come into the workspace.
    kept = TEMPERATURES[1]
    name = next(name for name, data in found.items() if data is by_temperature[kept])
    run(["dvc", "exp", "apply", name], root)
    params = load_params([root / "params.yaml"])
    assert params["train"]["dwa_temperature"] == kept
    applied, shown = json.loads((root / METRICS_FILE).read_text()), by_temperature[kept]["metrics"][METRICS_FILE]["data"]
    assert {task: applied[task] for task in TASKS} == {task: shown[task] for task in TASKS}  # (DVC shows no lists)
    # It reproduced MT-Net only: every other training declares train.dwa_temperature, and the report
    # reads MT-Net's new metrics. `dvc repro` retrains the other multi-task models; the ST-Nets, whose
    # single task DWA does not weigh, republish their finished runs byte for byte (the run's identity
    # leaves DWA out for them), so their evaluations do not run again.
    plan = Plan(params)
    others = [model for model in plan.models if model != MODEL]
    multi_task = {model for model in others if len(plan.model_tasks(model)) > 1}
    trainings = {job_name("train_from_st" if plan.init_from(model) else "train", model, 0) for model in others}
    assert dvc_changed(root) == trainings | {"report"}
    before = {model: sha256_file(root / paths.model_file(model, 0)) for model in others}
    ran = set(re.findall(r"Running stage '([^']+)'", run(["dvc", "repro"], root).stdout))
    assert ran == trainings | {job_name("evaluate", model, 0) for model in multi_task} | {"report"}
    after = {model: sha256_file(root / paths.model_file(model, 0)) for model in others}
    assert {model for model in others if after[model] != before[model]} == multi_task
    # Then Snakemake adopts the result: neither front end has anything to run.
    run(["mbmt", "pull", "--checkout"], root)
    assert planned(root) == set() and dvc_changed(root) == set()

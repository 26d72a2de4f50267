"""End to end on the tiny configuration, in a git + DVC copy of the project.

The whole DAG runs once under Snakemake with seeds [0, 1] (one module-scoped run, ~3 min on 2
cores), which records its outputs for DVC when it succeeds; each test then works on a copy of that
finished project: every model trained once per seed, a params change re-runs exactly the changed
model's trainings, its evaluations and the report, a third seed exactly its own jobs and the report
(with Snakemake and with `dvc repro`), the results round-trip through a DVC remote, and the report
holds every table; so does Snakemake's HTML report of the run, which renders in headless Chromium.
"""

from __future__ import annotations

import base64
import getpass
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mbmt.config import load_params
from mbmt.plan import REPORT_OUTPUTS, Plan, evaluate_outputs, job_name, train_outputs
from mbmt.reporting.document import RUN_TITLE
from mbmt.reporting.tables import TABLE_TITLES
from mbmt.tasks import METRICS

import chromium
from provided import missing
from test_workflow_project import (SNAKEMAKE_FAST, assert_trained_per_seed, commit, contents, copy_of, copy_project,
                                   dvc_changed, dvc_view, embedded, init_git_dvc, outputs, planned, run, set_seeds,
                                   written)

pytestmark = pytest.mark.slow

# Modules that decide how a stage runs, not what it computes; no stage lists them as a dependency
# (STAGE_CODE in src/mbmt/stage_specs.py).
INFRASTRUCTURE = {"mbmt/__init__.py", "mbmt/cli.py", "mbmt/config.py", "mbmt/environment.py", "mbmt/plan.py", "mbmt/stage_specs.py",
                  "mbmt/errors.py", "mbmt/io.py",
                  "mbmt/gpus.py", "mbmt/locking.py", "mbmt/paths.py", "mbmt/provenance.py", "mbmt/stages/__init__.py",
                  "mbmt/stages/config.py"}
SEEDS = [0, 1]
# A change to the paper's MBMT-Net alone, and what it must re-run: its jobs of every seed.
CHANGED_MODEL = "mbmt_partial"
AFFECTED_STAGES = {job_name(stage, CHANGED_MODEL, seed) for stage in ("train_from_st", "evaluate") for seed in SEEDS} | {"report"}
AFFECTED_OUTPUTS = {str(path) for seed in SEEDS for path in train_outputs(CHANGED_MODEL, seed)
                    + evaluate_outputs(CHANGED_MODEL, seed)} | set(map(str, REPORT_OUTPUTS))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The project after `snakemake` (which records its outputs for DVC), committed to git."""
    root = copy_project(tmp_path_factory.mktemp("workflow") / "project")
    set_seeds(root, SEEDS)
    init_git_dvc(root)
    # Each stage's log then lists every module it imported (test_stages_depend_on_the_code_they_import).
    result = run(["snakemake", *SNAKEMAKE_FAST], root, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "Recorded the outputs for DVC" in result.stderr
    commit(root, "results")
    return root


@pytest.fixture
def project(finished, tmp_path) -> Path:
    """A copy of the finished project (modification times kept) that a test may change."""
    return copy_of(finished, tmp_path / "project")


def change_param(root: Path) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    entry = params["models"][CHANGED_MODEL]
    entry["fusion"] = "sum" if entry["fusion"] == "concat" else "concat"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_both_front_ends_see_the_run_as_up_to_date(finished):
    """Right after `snakemake`, with no command in between: DVC has recorded every output."""
    assert run(["dvc", "status"], finished).stdout.strip() == "Data and pipelines are up to date."
    assert planned(finished) == set()


def locked_stages(root: Path) -> dict[str, object]:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_a_deleted_model_file_comes_back_with_mbmt_pull(project):
    """Snakemake does not rebuild an intermediate output while what it feeds is current; DVC sees
    it missing. `mbmt pull --checkout` restores it from the cache, and both agree again."""
    model = project / "models" / "mtnet" / "seed0" / "model.pt"
    recorded = model.read_bytes()
    model.unlink()
    assert planned(project) == set()
    assert dvc_changed(project) == {"train@mtnet-0", "evaluate@mtnet-0", "report"}
    run(["mbmt", "pull", "--checkout"], project)
    assert model.read_bytes() == recorded
    assert dvc_changed(project) == set() and planned(project) == set()


def test_stages_depend_on_the_code_they_import(finished):
    """Every mbmt module a stage imported while it ran (python -X importtime, in its log) is one of
    its declared dependencies, apart from the infrastructure modules."""
    view = dvc_view(finished)
    for log in sorted((finished / "logs").rglob("*.log")):
        parts = log.relative_to(finished / "logs").with_suffix("").parts  # ("fetch",) or ("train", "st_ss", "seed0")
        name = parts[0] if len(parts) == 1 else next(
            s for s in (job_name(parts[0], parts[1], parts[2].removeprefix("seed")),
                        job_name(f"{parts[0]}_from_st", parts[1], parts[2].removeprefix("seed"))) if s in view)
        imported = {m.replace(".", "/") for m in re.findall(r"^import time:.*\|\s+(mbmt(?:\.\w+)*)$", log.read_text(), re.M)}
        files = {f"{m}.py" if (finished / "src" / f"{m}.py").is_file() else f"{m}/__init__.py" for m in imported}
        # The CLI loads the stage module with importlib.import_module, which -X importtime does not list.
        files.add(f"mbmt/stages/{name.split('@')[0].removesuffix('_from_st')}.py")
        assert "mbmt/data/hdf5.py" in files, f"{log}: no import times logged"
        declared = {dep.removeprefix("src/") for dep in view[name].deps if dep.startswith("src/")}
        assert not files - INFRASTRUCTURE - declared, f"{name} ran code it does not depend on"


def test_report_holds_every_table(finished):
    reports = finished / "reports"
    index = (reports / "README.md").read_text()
    # paired_differences: 3 MBMT-Net variants x 3 baselines x 3 headline metrics; delta_m: the 5 multi-task models.
    for name, rows in {"headline": 6, "architectures": 8, "parameters": 8, "results": 12, "delta_m": 5,
                       "relative_improvements": 3 * 14, "paired_differences": 3 * 3 * 3}.items():
        table = (reports / "tables" / f"{name}.md").read_text()
        title = table.splitlines()[0].removeprefix("## ")
        assert title in index and f"tables/{name}.csv" in index
        csv_rows = (reports / "tables" / f"{name}.csv").read_text().splitlines()
        assert len(csv_rows) == 1 + rows, name
    results = (reports / "tables" / "results.csv").read_text().splitlines()
    assert "MBMT-Net DWA (partial) (ours)" in results[0] and "MBMT-Net DWA (partial) (paper)" in results[0]
    # Every measured value of the paper's MBMT-Net column is the mean of its seeds' metrics files.
    header = results[0].split(",")
    ours = header.index("MBMT-Net DWA (partial) (ours)")
    seeds = yaml.safe_load((finished / "params.yaml").read_text())["seeds"]
    assert len(seeds) > 1  # the column is a mean, and its spread has a column of its own
    runs = [json.loads((finished / "metrics" / CHANGED_MODEL / f"seed{seed}.json").read_text()) for seed in seeds]
    measured = [float(row.split(",")[ours]) for row in results[1:]]
    expected = [sum(run[m.task][m.key] for run in runs) / len(runs) for m in METRICS]
    assert measured == pytest.approx(expected, rel=1e-12)
    for figure in ("training_semantic", "training_depth", "training_normal", "qualitative_test", "comparison_test"):
        assert (reports / "figures" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{figure}.png" in index
    # Provenance: every number's files, by the md5 dvc.lock records for them.
    provenance = json.loads((reports / "provenance.json").read_text())
    lock = (finished / "dvc.lock").read_text()
    for name, model in provenance["models"].items():
        for entry in model["runs"]:
            assert entry["metrics_match_model_file"], name
            assert entry["metrics_file"]["md5"] in lock and entry["model_file"]["md5"] in lock, name
    assert provenance["profiles"] == ["tiny"]


def test_params_change_reruns_one_model_with_snakemake(project):
    change_param(project)
    assert planned(project) == AFFECTED_STAGES
    assert dvc_changed(project) == {job_name("train_from_st", CHANGED_MODEL, seed) for seed in SEEDS}  # the same cause
    before, lock_before = written(project), locked_stages(project)
    run(["snakemake", *SNAKEMAKE_FAST], project)
    after, lock_after = written(project), locked_stages(project)
    assert {out for out in after if after[out] != before[out]} == AFFECTED_OUTPUTS
    # Snakemake recorded its run for DVC: exactly the stages it re-ran have new entries.
    assert {name for name in lock_after if lock_after[name] != lock_before[name]} == AFFECTED_STAGES
    assert dvc_changed(project) == set() and planned(project) == set()


def test_params_change_reruns_one_model_with_dvc(project):
    change_param(project)
    before = written(project)
    output = run(["dvc", "repro"], project).stdout
    assert set(re.findall(r"Running stage '([^']+)'", output)) == AFFECTED_STAGES
    after = written(project)
    assert {out for out in after if after[out] != before[out]} == AFFECTED_OUTPUTS
    assert dvc_changed(project) == set()


def test_every_model_trained_once_per_seed(finished):
    """Each seed's own weights, metrics of those weights, each MBMT-Net from its seed's ST-Nets."""
    assert_trained_per_seed(finished, Plan(load_params([finished / "params.yaml"])).models, SEEDS)


def added_seed(project: Path) -> tuple[set[str], set[str]]:
    """Seed 2 added to params.yaml (and dvc.yaml regenerated): its jobs and outputs, and the report's."""
    set_seeds(project, [*SEEDS, 2])
    names = Plan(load_params([project / "params.yaml"])).models
    stages = {stage for stage, stage_view in dvc_view(project).items() if stage_view.cmd.endswith("--seed 2")}
    assert {stage.split("@")[1] for stage in stages} == {f"{name}-2" for name in names for _ in (0, 1)}
    outputs = {str(p) for name in names for p in train_outputs(name, 2) + evaluate_outputs(name, 2)}
    return stages | {"report"}, outputs | set(map(str, REPORT_OUTPUTS))


def test_a_new_seed_runs_only_its_jobs_and_the_report_with_snakemake(project):
    stages, changed = added_seed(project)
    assert planned(project) == stages
    before = written(project)
    run(["snakemake", *SNAKEMAKE_FAST], project)
    after = written(project)
    assert {out for out in after if after[out] != before.get(out)} == changed
    assert_trained_per_seed(project, Plan(load_params([project / "params.yaml"])).models, [*SEEDS, 2])
    assert planned(project) == set() and dvc_changed(project) == set()  # the run was recorded for DVC


def test_a_new_seed_runs_only_its_jobs_and_the_report_with_dvc(project):
    stages, changed = added_seed(project)
    assert dvc_changed(project) == stages
    before = written(project)
    output = run(["dvc", "repro"], project).stdout
    assert set(re.findall(r"Running stage '([^']+)'", output)) == stages
    after = written(project)
    assert {out for out in after if after[out] != before.get(out)} == changed
    assert dvc_changed(project) == set()


@pytest.fixture(params=["local", "ssh", "s3"])
def remote(request, tmp_path) -> tuple[str, dict[str, str], dict[str, str], dict[str, str]]:
    """A DVC remote on this machine: (url, its options committed to .dvc/config, its options kept in
    .dvc/config.local (credentials), environment of the DVC commands). The SSH server is conftest.py's
    `sshd`, the S3 server its `s3_server` (moto); each is skipped, with the reason, where it cannot run
    (under CI=true: fails, tests/provided.py)."""
    if request.param == "local":
        return str(tmp_path / "remote"), {}, {}, {}
    if request.param == "ssh":
        port, keyfile, env = request.getfixturevalue("sshd")
        return f"ssh://{getpass.getuser()}@127.0.0.1:{port}{tmp_path / 'remote'}", {}, {"keyfile": str(keyfile)}, env
    endpoint, credentials, env = request.getfixturevalue("s3_server")
    return "s3://mbmt/project", {"endpointurl": endpoint}, credentials, env


def test_remote_round_trip_restores_everything(project, tmp_path, remote):
    """push; in a fresh clone `mbmt pull` gets every output byte for byte, and then neither DVC nor
    Snakemake has anything to run (and Snakemake tracks params again)."""
    url, options, local, env = remote
    run(["dvc", "remote", "add", "--default", "shared", url], project)
    for key, value in options.items():
        run(["dvc", "remote", "modify", "shared", key, value], project)
    commit(project, "remote")
    for key, value in local.items():  # credentials stay out of git: .dvc/config.local, copied to the clone by hand
        run(["dvc", "remote", "modify", "--local", "shared", key, value], project)
    run(["dvc", "push", "--quiet"], project, env=env)
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(project), str(clone)], tmp_path)
    assert not any(value in (clone / ".dvc" / "config").read_text() for value in local.values())
    if local:
        shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    run(["mbmt", "pull"], clone, env=env)
    for out in outputs(project):
        assert contents(clone, out) == contents(project, out), out
    assert dvc_changed(clone) == set()
    assert planned(clone) == set()
    change_param(clone)
    assert planned(clone) == AFFECTED_STAGES


@pytest.fixture(scope="module")
def html_report(finished, tmp_path_factory) -> Path:
    """Snakemake's HTML report of the finished run, built as docs/workflow.md says: nothing re-runs."""
    path = tmp_path_factory.mktemp("html") / "report.html"
    before = written(finished)
    run(["snakemake", "--report", str(path)], finished)
    assert written(finished) == before
    return path


def test_html_report_holds_every_table_the_figures_the_rule_graph_and_the_runtimes(finished, html_report):
    data = embedded(html_report)
    figures = sorted(f"reports/figures/{png.name}" for png in (finished / "reports" / "figures").glob("*.png"))
    assert len(figures) == 5  # three training curves, the predictions and the comparison on the test split
    tables = {f"reports/tables/{name}.html": title for name, title in {**TABLE_TITLES, "run": RUN_TITLE}.items()}
    assert set(data["results"]) == {*tables, *figures, "reports/provenance.json"}
    for path, result in data["results"].items():  # each file embedded as it is
        assert base64.b64decode(result["data_uri"].split("base64,", 1)[1]) == (finished / path).read_bytes(), path
    assert {path: data["results"][path]["labels"]["table"] for path in tables} == tables
    category = {path: name for name, subcategories in data["categories"].items()
                for paths in subcategories.values() for path in paths}
    assert {name for path, name in category.items() if path in tables} == {
        "Results tables", "Architectures and parameters", "What was run"}
    assert category["reports/tables/parameters.html"] == "Architectures and parameters"
    assert {category[path] for path in figures} == {"Training curves", "Predictions"}
    nodes = {node["rule"] for node in next(d for d in data["rulegraph"]["data"] if d["name"] == "node-data")["values"]}
    assert nodes == {"fetch", "preprocess", "train", "train_from_st", "evaluate", "report", "all"}
    # One runtime per job that ran, by rule: DVC's stages are the same jobs.
    runtimes = Counter(entry["rule"] for entry in data["runtimes"]["data"]["values"])
    assert runtimes == Counter(stage.split("@")[0] for stage in dvc_view(finished))
    # The description says what was run: the facts reports/README.md opens with.
    provenance = json.loads((finished / "reports" / "provenance.json").read_text())
    description = data["workflow-desc"]
    assert "<td>tiny</td>" in description and f"git {provenance['git_revision']}" in description
    assert "Comparable with the paper" in description and "only profile <tt" in description


def test_html_report_renders_in_chromium(html_report, tmp_path):
    """Opened in headless Chromium, the page runs without a script error, lists every result under its
    category and draws the rule graph and the runtime charts."""
    if chromium.executable() is None:
        missing("Chromium", "it is not installed (.ci/run installs Debian's chromium package; "
                "apt-get install chromium): the report was checked as data only")
    data = embedded(html_report)
    with chromium.Page(tmp_path / "profile") as page:
        page.open(html_report.as_uri())
        assert page.wait_for("document.querySelector('#rulegraph canvas, #rulegraph svg') !== null")
        menu = page.evaluate("document.body.innerText")
        assert all(name in menu for name in data["categories"]) and "What was run" in menu
        for name, subcategories in data["categories"].items():
            for subcategory, paths in subcategories.items():
                # Back to the menu first, as a reader goes: a results list keeps what it lists while shown.
                page.evaluate("app.setView({navbarMode: 'menu'})")
                assert page.wait_for("document.body.innerText.includes('Statistics')")
                page.evaluate(f"app.setView({{navbarMode: 'subcategory', category: {json.dumps(name)}, "
                              f"subcategory: {json.dumps(subcategory)}}})")
                labels = json.dumps([label for path in paths for label in data["results"][path]["labels"].values()])
                assert page.wait_for(f"{labels}.every(label => document.body.innerText.includes(label))"), (name, subcategory)
        page.evaluate("app.setView({content: 'stats'})")
        assert page.wait_for("['#runtimes', '#timeline'].every(id => document.querySelector(id + ' canvas, ' + id + ' svg'))")
        assert page.screenshot()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []


def move_in_lock(root: Path, install_set: str, name: str, version: str) -> None:
    """requirements/<install_set>.txt of ``root`` with ``name`` locked at ``version``."""
    path = root / "requirements" / f"{install_set}.txt"
    text, count = re.subn(rf"(?m)^{re.escape(name)}==[^ ;\\]+", f"{name}=={version}", path.read_text())
    assert count == 1, name
    path.write_text(text)


def test_a_lock_change_reruns_exactly_the_stages_its_packages_affect(project):
    """A lock that moves only the front ends' packages (dvc, a DVC plugin) re-runs nothing; one that
    moves torchjd (the trainings' gradient solvers) re-runs every training and what it feeds, in both
    front ends. A deliberate upgrade keeps the finished results with the front ends' own ways."""
    view = dvc_view(project)
    trainings = {name for name in view if name.startswith(("train@", "train_from_st@"))}
    downstream = trainings | {name for name in view if name.startswith("evaluate@")} | {"report"}
    for install_set in ("base", "dev"):
        move_in_lock(project, install_set, "dvc", "3.67.2")
    move_in_lock(project, "dev", "dvc-s3", "3.3.1")
    run(["mbmt", "dag"], project)
    assert planned(project) == set() and dvc_changed(project) == set()

    for install_set in ("base", "dev"):
        move_in_lock(project, install_set, "torchjd", "0.18.1")
    run(["mbmt", "dag"], project)
    assert planned(project) == downstream
    assert dvc_changed(project) == trainings  # the same cause: DVC lists the stages whose dependency moved
    # Keep the results (docs/environment.md): Snakemake's --touch, DVC's commit. They still name the
    # lock that computed them.
    metrics = project / "metrics" / "mtnet" / "seed0.json"
    before = metrics.read_bytes()
    run(["snakemake", "--touch", "--forceall", "--cores", "1"], project)  # every output, in DAG order
    run(["dvc", "commit", "--no-relink", "--force"], project)  # hash the outputs as they are, no relinking
    assert planned(project) == set() and dvc_changed(project) == set()
    assert metrics.read_bytes() == before
    from mbmt.environment import lock_digest

    recorded = json.loads(before)["context"]["provenance"]["environment"]
    assert recorded["lock_sha256"] == lock_digest() != lock_digest(project / "requirements" / "base.txt")
    assert recorded["matches_lock"] is True

"""The Snakefile and dvc.yaml describe the same DAG, as each tool loads them: the same stages,
commands, dependencies, outputs and params keys (and values). Nothing is executed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_workflow_project import REPO, copy_project, dvc_view, run, snakemake_view


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A copy of the project with the paper's params.yaml, as a DVC repository."""
    from dvc.repo import Repo

    root = copy_project(tmp_path_factory.mktemp("dag") / "project", preset=None)
    Repo.init(str(root), no_scm=True).close()
    return root


@pytest.fixture(scope="module")
def snakemake_jobs(root):
    return snakemake_view(root)


@pytest.fixture(scope="module")
def dvc_stages(root):
    return dvc_view(root)


def test_same_stages(snakemake_jobs, dvc_stages):
    assert sorted(snakemake_jobs) == sorted(dvc_stages)
    # fetch, preprocess, the b2 and b5 weights, 8 trainings, 8 evaluations (one seed), report
    assert len(dvc_stages) == 2 + 2 + 8 + 8 + 1
    assert {"weights@efficientnet_b2", "weights@efficientnet_b5"} <= set(dvc_stages)


def test_same_commands(snakemake_jobs, dvc_stages):
    for name, stage in dvc_stages.items():
        assert snakemake_jobs[name].cmd == stage.cmd, name
    assert dvc_stages["train_from_st@mbmt_partial-0"].cmd == "mbmt train mbmt_partial --seed 0"


def test_same_dependencies(snakemake_jobs, dvc_stages):
    for name, stage in dvc_stages.items():
        assert snakemake_jobs[name].deps == stage.deps, name


def test_same_outputs(snakemake_jobs, dvc_stages):
    for name, stage in dvc_stages.items():
        assert snakemake_jobs[name].outs == stage.outs, name


def test_same_params(snakemake_jobs, dvc_stages):
    for name, stage in dvc_stages.items():
        assert snakemake_jobs[name].params == stage.params, name
    # Key granularity: a model's training depends on its own entry, not the others'.
    keys = set(dvc_stages["train@st_ss-0"].params)
    assert "models.st_ss" in keys and "models.st_de" not in keys and "train.num_workers" not in keys
    # The seed is on the command line: a new seed in params seeds leaves the other seeds' jobs alone.
    assert "seeds" not in keys and "seeds" in dvc_stages["report"].params


def test_every_output_has_one_owner(dvc_stages):
    owners: dict[str, str] = {}
    for name, stage in dvc_stages.items():
        for out in stage.outs:
            assert out not in owners, f"{out} is an output of {owners.get(out)} and {name}"
            owners[out] = name
    paths = sorted(owners)
    for a, b in zip(paths, paths[1:]):
        assert not b.startswith(a + "/"), f"{b} ({owners[b]}) lies inside {a} ({owners[a]})"


def test_a_snakemake_run_registers_every_output_with_dvc(root, dvc_stages):
    """What a Snakemake run registers in DVC's lock table (workflow/rules/dvc.smk) covers every
    output of every DVC stage, so no `dvc repro` stage can start while it runs."""
    from mbmt.config import load_params
    from mbmt.plan import Plan

    registered = {str(path) for path in Plan(load_params([root / "params.yaml"])).outputs}
    assert registered == set().union(*(stage.outs for stage in dvc_stages.values()))


def test_mbmt_variants_train_after_their_st_models(snakemake_jobs, root):
    models = yaml.safe_load((root / "params.yaml").read_text())["models"]
    for name, entry in models.items():
        st_models = {f"models/{st}/seed0/model.pt" for st in entry.get("init_from") or []}
        job = snakemake_jobs.get(f"train_from_st@{name}-0") or snakemake_jobs[f"train@{name}-0"]
        assert {d for d in job.deps if d.endswith("/model.pt")} == st_models, name
    assert snakemake_jobs["train_from_st@mbmt_partial-0"].deps >= {"models/st_ss/seed0/model.pt",
                                                                     "models/st_snp/seed0/model.pt"}


def test_rules_log_benchmark_and_request_resources(snakemake_jobs):
    for name, view in snakemake_jobs.items():
        job = view.job
        assert len(job.log) == 1 and job.benchmark, name
        if name.split("@")[0] in ("train", "train_from_st", "evaluate"):
            assert job.resources["gpu"] == 1 and job.rule.resources["_cores"] != 1, name


def test_only_downloads_and_the_target_run_on_the_submitting_node(snakemake_jobs):
    """A cluster executor submits every job but its localrules; downloads need the login node's network."""
    workflow = snakemake_jobs["fetch"].job.dag.workflow
    assert workflow._localrules == {"all", "fetch", "weights"}


def test_preset_reaches_the_commands(root):
    """With --configfile, every command reads params.yaml and the preset, in Snakemake's order."""
    (root.parent / "shared" / "data" / "nyuv2-test10").mkdir(parents=True)  # the demo's real_images
    jobs = snakemake_view(root, configfiles=(root / "config" / "demo.yaml",))
    for name, view in jobs.items():
        assert view.cmd.endswith(" --params params.yaml --params config/demo.yaml"), name
    # The demo imports the real NYUv2 frames: preprocess writes real.h5 and the report reads it.
    assert "data/processed/real.h5" in jobs["preprocess"].outs
    assert "data/processed/real.h5" in jobs["report"].deps
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    assert jobs["train@st_ss-0"].params["train.epochs"] == demo["train"]["epochs"] != 200  # not the paper's


def test_config_overrides_are_refused(root):
    """--config would change what Snakemake schedules but not what the commands read."""
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError, match="--configfile"):
        snakemake_view(root, config={"seeds": [1]})


def test_committed_dvc_yaml_is_generated_from_params():
    """dvc.yaml is what `mbmt dag` writes from the committed params.yaml (run `mbmt dag` if not)."""
    from mbmt.config import load_params
    from mbmt.dvc_yaml import render_dvc_yaml

    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml(load_params([REPO / "params.yaml"]))


def test_dag_check_fails_on_a_stale_dvc_yaml(project, capsys):
    from mbmt.cli import main

    assert main(["dag"]) == 0 and main(["dag", "--check"]) == 0
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["mbmt_full_pretrained"]["init_from"] = None
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    capsys.readouterr()
    assert main(["dag", "--check"]) == 2
    assert "dvc.yaml is out of date with params.yaml" in capsys.readouterr().err
    assert main(["dag"]) == 0 and main(["dag", "--check"]) == 0
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": [0, 1]}, sort_keys=False))
    assert main(["dag", "--check"]) == 2  # dvc.yaml lists each seed's jobs
    assert main(["dag"]) == 0
    assert yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["evaluate"]["matrix"]["seed"] == [0, 1]
    # A lock that moves a result-affecting package: requirements/stages.yaml (dvc.yaml's params) is stale.
    lock = project / "requirements" / "base.txt"
    lock.write_text(lock.read_text().replace("\ntorchjd==0.18.0 ", "\ntorchjd==0.18.1 "))
    capsys.readouterr()
    assert main(["dag", "--check"]) == 2
    assert "requirements/stages.yaml is out of date with requirements/base.txt" in capsys.readouterr().err
    assert main(["dag"]) == 0 and main(["dag", "--check"]) == 0
    assert "torchjd: 0.18.1" in (project / "requirements" / "stages.yaml").read_text()


# A preset that moves models between the two training groups: one variant now trains from the
# data, the from-scratch one from two ST-Nets, and the paper's variant from its ST-Nets in another order.
REWIRED = {"models": {
    "mbmt_full_pretrained": {"init_from": None},
    "mbmt_full_scratch": {"init_from": ["st_ss", "st_de"], "backbones": ["efficientnet_b2", "efficientnet_b2"]},
    "mbmt_partial": {"init_from": ["st_snp", "st_ss", "st_de"]},
}}


def both_dags(root: Path, preset: dict) -> tuple[dict, dict]:
    """Snakemake's jobs with ``preset`` and the stages `dvc repro` runs after `mbmt config ...
    --output params.yaml` and `mbmt dag`, asserted to be the same stages, dependencies, outputs and params."""
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    (root / "preset.yaml").write_text(yaml.safe_dump(preset))
    jobs = snakemake_view(root, configfiles=(root / "preset.yaml",))
    run(["mbmt", "config", "-p", "params.yaml", "-p", "preset.yaml", "--output", "params.yaml"], root)
    run(["mbmt", "dag"], root)
    stages = dvc_view(root)
    assert sorted(jobs) == sorted(stages)
    for name, stage in stages.items():
        job = jobs[name]
        assert job.cmd == f"{stage.cmd} --params params.yaml --params preset.yaml", name
        assert (job.deps, job.outs, job.params) == (stage.deps, stage.outs, stage.params), name
    return jobs, stages


def test_a_preset_that_changes_init_from_changes_both_dags_identically(tmp_path):
    stages = both_dags(copy_project(tmp_path / "project", preset=None), REWIRED)[1]
    assert "train@mbmt_full_pretrained-0" in stages and "train_from_st@mbmt_full_scratch-0" in stages
    assert {d for d in stages["train_from_st@mbmt_full_scratch-0"].deps if d.endswith("model.pt")} == {
        "models/st_ss/seed0/model.pt", "models/st_de/seed0/model.pt"}
    assert not {d for d in stages["train@mbmt_full_pretrained-0"].deps if d.endswith("model.pt")}


def test_seeds_multiply_the_per_model_jobs_in_both_dags(tmp_path, dvc_stages):
    """With seeds [0, 1, 2] every model trains and is evaluated three times, each seed's MBMT-Net
    after that seed's ST-Nets, and the report reads every seed's results. Seed 0's jobs are
    exactly those of the one-seed DAG, so adding seeds re-runs none of them."""
    stages = both_dags(copy_project(tmp_path / "project", preset=None), {"seeds": [0, 1, 2]})[1]
    per_model = {name.rsplit("-", 1)[0] for name in stages if "@" in name and not name.startswith("weights@")}
    assert {name for name in stages if "@" in name and not name.startswith("weights@")} == {
        f"{group}-{seed}" for group in per_model for seed in (0, 1, 2)}
    assert len(stages) == 2 + 2 + 3 * (8 + 8) + 1  # the weights jobs are shared by the seeds
    assert stages["train@st_ss-2"].cmd == "mbmt train st_ss --seed 2"
    assert stages["train@st_ss-2"].outs == {"models/st_ss/seed2/model.pt", "models/st_ss/seed2/live"}
    assert stages["evaluate@mtan-1"].outs == {"metrics/mtan/seed1.json", "metrics/mtan/seed1.images.npz"}
    assert {d for d in stages["train_from_st@mbmt_partial-1"].deps if d.endswith("model.pt")} == {
        f"models/{st}/seed1/model.pt" for st in ("st_ss", "st_de", "st_snp")}
    assert {f"metrics/{m}/seed{s}.{kind}" for m in ("st_ss", "mtan") for s in (0, 1, 2)
            for kind in ("json", "images.npz")} <= stages["report"].deps
    for name, one_seed in dvc_stages.items():
        if name != "report":
            assert (stages[name].cmd, stages[name].deps, stages[name].outs, stages[name].params) == (
                one_seed.cmd, one_seed.deps, one_seed.outs, one_seed.params), name


@pytest.mark.parametrize("preset, message", [
    ("train: {lr: 1e-4}\n",
     "train.lr: '1e-4' is a string, expected a number — YAML reads 1e-4 as a string; write 1.0e-4"),
    ("models:\n  mtnet: {backbone: efficentnet_b5}\n",
     "models.mtnet.backbone: 'efficentnet_b5' is not a timm model; did you mean efficientnet_b5"),
])
def test_bad_params_stop_snakemake_with_mbmt_configs_message(root, preset, message):
    """A schema error or an unknown backbone is found before any job, in `mbmt config`'s words."""
    (root / "bad.yaml").write_text(preset)
    snakemake = run(["snakemake", "-n", "--configfile", "bad.yaml"], root, check=False)
    config = run(["mbmt", "config", "-p", "params.yaml", "-p", "bad.yaml"], root, check=False)
    assert snakemake.returncode == 1 and config.returncode == 2
    assert config.stderr.startswith("mbmt config: error: params.yaml + bad.yaml: invalid parameters:\n  ")
    assert message in config.stderr
    assert snakemake.stderr.endswith(config.stderr.replace("mbmt config: error: ", "snakemake: error: "))
    assert "Traceback" not in snakemake.stderr and "Building DAG" not in snakemake.stdout + snakemake.stderr


def test_a_snakemake_run_is_recorded_for_dvc_only_as_dvc_yaml_describes_it(project):
    """The Snakefile's onsuccess handler records a run with `dvc commit` only when dvc.yaml (its
    params keys read from params.yaml) describes what ran; otherwise it says why and what to run."""
    from mbmt.config import load_params
    from mbmt.dvc_yaml import render_dvc_yaml
    from mbmt.sync import why_not_recorded

    from mbmt.environment import BASE_LOCK, STAGES_FILE, render_stages_file

    params = load_params(["params.yaml"])
    (project / "dvc.yaml").write_text(render_dvc_yaml(params))
    # The stages' locked packages, which dvc.yaml's params read, must be the lock's too.
    assert why_not_recorded(params, ["params.yaml"], whole_dag=True).startswith(
        "requirements/stages.yaml is out of date with requirements/base.txt: run `mbmt dag`")
    (project / STAGES_FILE).write_text(render_stages_file(BASE_LOCK))
    assert why_not_recorded(params, ["params.yaml"], whole_dag=True) is None
    with_preset = why_not_recorded(params, ["params.yaml", "config/demo.yaml"], whole_dag=True)
    assert with_preset.startswith("this run used presets (config/demo.yaml), and DVC records params.yaml's values")
    assert "mbmt config -p params.yaml -p config/demo.yaml --output params.yaml" in with_preset
    assert "only some targets" in why_not_recorded(params, ["params.yaml"], whole_dag=False)
    params["models"]["mbmt_partial"]["init_from"] = None
    assert why_not_recorded(params, ["params.yaml"], whole_dag=True).startswith("dvc.yaml is out of date")


# Modules that decide how a stage runs, not what it computes (STAGE_CODE leaves them out; the
# same list as tests/test_workflow.py's, which checks what a real run imported).
INFRASTRUCTURE = {"__init__.py", "cli.py", "config.py", "environment.py", "plan.py", "stage_specs.py", "errors.py", "io.py", "locking.py",
                  "paths.py", "provenance.py", "stages/__init__.py", "stages/config.py"}
PACKAGE = REPO / "src" / "mbmt"


def _imported_files(path: Path, *, module_level: bool) -> set[str]:
    """The mbmt files ``path`` imports (package-relative), with each package's __init__.py on the way;
    ``module_level``: only the imports run when it is imported, not those inside functions."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level else list(ast.walk(tree))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], node.module or ""]) if node.level else node.module
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    files = set()
    for name in names:
        parts = name.split(".")
        for i in range(2, len(parts) + 1) if parts[0] == "mbmt" else ():
            stem = PACKAGE.parent.joinpath(*parts[:i])
            for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
                if candidate.is_file():
                    files.add(candidate.relative_to(PACKAGE).as_posix())
    return files


def _closure(file: str) -> set[str]:
    seen, todo = set(), [file]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += _imported_files(PACKAGE / current, module_level=True)
    return seen


@pytest.mark.parametrize("stage", ["fetch", "preprocess", "train", "evaluate", "report"])
def test_stage_code_covers_what_the_stage_module_imports(stage):
    """STAGE_CODE holds every module the stage's module imports, transitively (statically, at module
    level; tests/test_workflow.py also checks what a real run imported, functions' imports included)."""
    from mbmt.stage_specs import code_files

    declared = {path.relative_to(PACKAGE).as_posix() for path in code_files(stage)}
    missing = _closure(f"stages/{stage}.py") - INFRASTRUCTURE - declared
    assert not missing, f"STAGE_CODE[{stage!r}] misses {sorted(missing)}"


def test_no_import_runs_back_up_the_dag():
    """Evaluation serves training (validation) and must not import it, not even inside a function;
    the device module sits below both."""
    for path in sorted((PACKAGE / "evaluation").rglob("*.py")) + [PACKAGE / "device.py", PACKAGE / "metrics.py"]:
        imported = _imported_files(path, module_level=False)
        assert not {f for f in imported if f.startswith(("training/", "stages/"))}, path


def test_single_task_models_come_from_params():
    """The ST-Nets are the models with arch st, in params order; each predicts its own task."""
    from mbmt.config import load_params
    from mbmt.plan import Plan

    params = load_params([REPO / "params.yaml"])
    plan = Plan(params)
    assert plan.single_task_models == ["st_ss", "st_de", "st_snp"]
    assert [plan.model_tasks(name) for name in plan.single_task_models] == [["semantic"], ["depth"], ["normal"]]
    assert all(len(plan.model_tasks(name)) == 3 for name in params["models"] if name not in plan.single_task_models)

"""Helpers for the workflow tests (no tests here): a project copy, and each front end's view of the DAG.

A job is named as DVC names its stage: the rule, "@", the model, "-" and the seed for a per-model,
per-seed rule (train@st_ss-0; mbmt.plan.job_name), so Snakemake's jobs and DVC's stages can be
compared one to one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import subprocesses
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "tiny.yaml"
# What a checkout of the project holds that the workflow needs (outputs and caches excluded).
PROJECT_FILES = ("Snakefile", "workflow", "profiles", "dvc.yaml", ".dvcignore", ".gitignore", "config", "src",
                 "requirements")
TO_LOG = " > {log} 2>&1"  # what the Snakefile appends to every stage command (workflow/rules/common.smk)
# What it puts before the train and evaluate commands: the job's GPU memory request (mbmt.gpus).
GPU_REQUEST = "MBMT_GPU_MEM_GB={gb} "
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "HF_HUB_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
}
# The longest one command of a test may take: the whole tiny DAG (two seeds) through one front end.
COMMAND_TIMEOUT = 900
# Two cores, every job on one thread, two "GPUs": jobs run two at a time (each is mostly imports).
SNAKEMAKE_FAST = ["--cores", "2", "--resources", "gpu=2", "--set-threads",
                  "preprocess=1", "train=1", "train_from_st=1", "evaluate=1", "report=1"]


def copy_project(dest: Path, preset: Path | None = TINY) -> Path:
    """The project's workflow files and code in ``dest``, with ``preset`` merged into its params.yaml
    and dvc.yaml generated for them."""
    from mbmt.config import load_params
    from mbmt.dvc_yaml import render_dvc_yaml

    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    params = load_params([REPO / "params.yaml", *([preset] if preset else [])])
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # dvc.yaml for these params, as `mbmt dag` writes it after a preset is merged into params.yaml
    # (which backbones have weights jobs, and which trainings depend on them, follow from params).
    (dest / "dvc.yaml").write_text(render_dvc_yaml(params))
    return dest


def copy_of(root: Path, dest: Path) -> Path:
    """A copy of the project ``root`` at ``dest`` that a test may change: modification times and
    links kept, so each front end sees the copy exactly as up to date as the original."""
    return Path(shutil.copytree(root, dest, symlinks=True))


def set_seeds(root: Path, seeds: list[int]) -> None:
    """params.yaml's seeds in ``root``, and dvc.yaml regenerated (docs/workflow.md, "Seeds")."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"] = seeds
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["mbmt", "dag"], root)


def run(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """``args`` in ``cwd`` with ENV (and ``env``), its output captured; a command still running after
    ``timeout`` seconds is killed with every job it started, and the test fails (tests/subprocesses.py)."""
    result = subprocesses.run(args, timeout, cwd=cwd, env={**ENV, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}{failed_job_logs(cwd, result.stderr)}")
    return result


def failed_job_logs(root: Path, stderr: str) -> str:
    """Snakemake's "Error in rule" blocks and the end of each failed job's log: the cause, which the
    tail of a long run's output no longer shows."""
    report = []
    for block in re.findall(r"^Error in rule .*?(?=^\S|\Z)", stderr, flags=re.M | re.S):
        report.append(block.rstrip())
        for log in re.findall(r"^\s+log: (\S+)", block, flags=re.M):
            path = root / log.rstrip(",")
            if path.is_file():
                report.append(f"--- end of {log}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n\nFailed jobs:\n" + "\n".join(report) if report else ""


def init_git_dvc(root: Path) -> None:
    """git + DVC repository with everything committed (what a collaborator would clone)."""
    run(["git", "init", "-q", "-b", "main"], root)
    run(["dvc", "init", "-q"], root)
    commit(root, "project")


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], root)


@dataclass
class StageView:
    """One job/stage as a front end declares it."""

    cmd: str
    deps: set[str]
    outs: set[str]
    params: dict[str, object]  # params key -> value
    job: object = None  # Snakemake's Job (logs, benchmark, resources), for Snakemake's view


def canonical(value):
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def job_name(rule: str, wildcards: dict[str, str]) -> str:
    """The DVC stage name of a Snakemake job of ``rule`` with ``wildcards``."""
    from mbmt.plan import job_name as per_seed

    if "backbone" in wildcards:  # one weights job per backbone: weights@efficientnet_b2
        return f"{rule}@{wildcards['backbone']}"
    return per_seed(rule, wildcards["model"], wildcards["seed"]) if "model" in wildcards else rule


def snakemake_view(root: Path, configfiles: tuple[Path, ...] = (), config: dict | None = None) -> dict[str, StageView]:
    """Every job of the Snakefile in ``root`` as Snakemake builds its DAG (all jobs, as with --forceall).

    Uses the Snakemake API to load the workflow and its DAG building (private in 9.x; the version is
    pinned in pyproject.toml): the jobs' formatted shell commands, inputs, outputs and params.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    jobs = {}
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=list(configfiles), config=config or {}),
            snakefile=root / "Snakefile", workdir=root)
        workflow_api.dag(DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        for job in workflow.dag.jobs:
            if job.rule.norun:  # the target rule "all"
                continue
            name = job_name(job.rule.name, job.wildcards_dict)
            shellcmd = job.shellcmd
            suffix = TO_LOG.format(log=job.log[0])
            assert shellcmd.endswith(suffix), f"{name}: {shellcmd!r} does not end with the log redirection"
            if job.rule.name in ("train", "train_from_st", "evaluate"):
                prefix = GPU_REQUEST.format(gb=job.resources["gpu_mem_gb"])
                assert shellcmd.startswith(prefix), f"{name}: {shellcmd!r} does not pass its GPU memory request"
                shellcmd = shellcmd[len(prefix):]
            jobs[name] = StageView(
                cmd=shellcmd[: -len(suffix)],
                deps={os.path.normpath(f) for f in job.input},
                outs={os.path.normpath(f) for f in job.output},
                params=canonical(dict(job.params.tracked)),
                job=job,
            )
    return jobs


def dvc_view(root: Path) -> dict[str, StageView]:
    """Every stage of dvc.yaml as DVC loads it (foreach expanded). A dependency on a source folder
    (one no stage writes) stands for the files DVC hashes in it (.dvcignore applied)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        outs = {os.path.normpath(o.def_path) for stage in stages for o in stage.outs}
        view = {}
        for stage in stages:
            deps, params = set(), {}
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    params.update(canonical(dep.read_params()))
                    continue
                path = os.path.normpath(dep.def_path)
                if (root / path).is_dir() and path not in outs:
                    deps |= {os.path.relpath(f, root) for f in repo.dvcignore.find(repo.fs, str(root / path))}
                else:
                    deps.add(path)
            view[stage.name] = StageView(cmd=stage.cmd, deps=deps,
                                               outs={os.path.normpath(o.def_path) for o in stage.outs},
                                               params=params)
    return view


def dry_run_jobs(output: str) -> dict[str, dict[str, str]]:
    """The jobs a `snakemake --dry-run` output plans, named as DVC stages, with the resources it
    prints for each."""
    jobs = {}
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", output):
        header = re.search(r"^(?:local)?rule (\w+):", block, re.MULTILINE)
        if not header:
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        name = job_name(header[1], dict(item.split("=", 1) for item in wildcards[1].split(", ")) if wildcards else {})
        resources = re.search(r"resources: (.*)", block)
        jobs[name] = dict(item.split("=", 1) for item in resources[1].split(", ")) if resources else {}
    return jobs


# --- What a run wrote, and what each front end would run next ----------------------------------------

TIMESTAMP = ".snakemake_timestamp"  # Snakemake's marker in directory outputs; .dvcignore'd


def outputs(root: Path) -> list[str]:
    return sorted(out for stage in dvc_view(root).values() for out in stage.outs)


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file() and f.name != TIMESTAMP)
    return [path]


def written(root: Path) -> dict[str, int]:
    """Each existing output's latest modification time (ns): what a run rewrote."""
    return {out: max(f.stat().st_mtime_ns for f in files_of(root / out)) for out in outputs(root)
            if (root / out).exists()}


def contents(root: Path, out: str) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest() for f in files_of(root / out)}


def planned(root: Path) -> set[str]:
    """The jobs `snakemake --dry-run` would run, named as DVC stages."""
    return set(dry_run_jobs(run(["snakemake", "--dry-run", "--cores", "1"], root).stdout)) - {"all"}


def embedded(report: Path) -> dict:
    """What a Snakemake HTML report page embeds for its script: results, categories, rule graph,
    runtimes, description."""
    text = report.read_text()
    return {name: json.loads(re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\n\s*</script>', text, re.S)[1])
            for name in ("results", "categories", "rulegraph", "runtimes", "workflow-desc")}


def dvc_changed(root: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], root).stdout))


def assert_trained_per_seed(root: Path, names: list[str], seeds: list[int], evaluated: list[str] | None = None) -> None:
    """Models ``names`` of ``root`` trained once per seed, and ``evaluated`` (default: all of them)
    evaluated: each seed's own weights, its metrics computed from them, and each MBMT-Net's frozen
    encoders those of its seed's ST-Nets."""
    import torch

    from mbmt.config import load_params
    from mbmt.plan import Plan
    from mbmt.io import sha256_file
    from mbmt.paths import metrics_file, model_file

    def weights(name: str, seed: int, prefix: str = "") -> dict:
        state = torch.load(root / model_file(name, seed), weights_only=True)["state_dict"]
        return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    params = load_params([root / "params.yaml"])
    for name in names if evaluated is None else evaluated:
        for seed in seeds:
            context = json.loads((root / metrics_file(name, seed)).read_text())["context"]
            assert context["checkpoint_sha256"] == sha256_file(root / model_file(name, seed)), (name, seed)
    for name in names:
        trained = [weights(name, seed) for seed in seeds]
        assert not any(same(a, b) for i, a in enumerate(trained) for b in trained[i + 1:]), name
        if params["models"][name].get("freeze"):
            for seed in seeds:
                for index, st in enumerate(Plan(params).init_from(name)):
                    frozen = weights(name, seed, f"encoder.backbones.{index}.")
                    assert {s for s in seeds if same(frozen, weights(st, s, "encoder."))} == {seed}, (name, st, seed)

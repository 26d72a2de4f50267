"""The workflow through profiles/slurm on a real Slurm cluster (tests/slurm_cluster.py: the single-node
cluster .ci/slurm-up.sh starts in CI; skipped with the reason elsewhere, failed under CI=true), and
the documented way to give account and partition (docs/workflow.md, "SLURM"), which keeps every
per-rule request.

The cluster is a small CPU one without accounting, run as docs/workflow.md says for one:
MBMT_SLURM_GPUS=0, a memory cap, --max-threads, --slurm-status-command squeue; the first status
check comes after 1 s instead of 40 (the plugin's only timing option) to keep the tests short.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import subprocesses
import torch
import yaml
from provided import require_module
from slurm_cluster import cancel_jobs_under, slurm, slurm_cluster, squeue_jobs  # noqa: F401 (fixtures)
from test_workflow_project import ENV, copy_of, copy_project, run

from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

MODEL = "mtnet"
TARGETS = [f"models/{MODEL}/seed0/model.pt", f"metrics/{MODEL}/seed0.json"]
# docs/workflow.md, "A small CPU cluster without accounting"; --max-threads 1: two jobs at once on 2 CPUs.
SLURM_ENV = {"MBMT_SLURM_GPUS": "0", "MBMT_SLURM_MAX_MEM_MB": "2000", "OMP_NUM_THREADS": "1"}
SLURM_OPTIONS = ["--workflow-profile", "profiles/slurm", "--slurm-status-command", "squeue", "--max-threads", "1",
                 "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5"]


def env_of(root: Path, **extra: str) -> dict[str, str]:
    return {**SLURM_ENV, "PYTHONPATH": str(root / "src"), **extra}


def snakemake_slurm(root: Path, *targets: str, **extra: str) -> subprocess.CompletedProcess:
    return run(["snakemake", *targets, *SLURM_OPTIONS], root, env=env_of(root, **extra))


def weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / TARGETS[0], weights_only=True)["state_dict"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics(root: Path) -> dict:
    import json

    return {k: v for k, v in json.loads((root / TARGETS[1]).read_text()).items() if k != "context"}


def test_documented_command_keeps_every_request(tmp_path):
    """docs/workflow.md's command for a GPU cluster with accounting, dry-run: a training job keeps
    the profile's runtime, memory and GPU and gets the account and its partition."""
    require_module("snakemake_executor_plugin_slurm", "snakemake-executor-plugin-slurm",
                   "the package is not installed (pip install -e '.[dev]' or '.[slurm]')")
    root = copy_project(tmp_path / "project")
    result = run(["snakemake", "--workflow-profile", "profiles/slurm", "-n", TARGETS[0]], root,
                 env={"MBMT_SLURM_ACCOUNT": "proj42", "MBMT_SLURM_PARTITION": "cpu",
                      "MBMT_SLURM_GPU_PARTITION": "gpu", "PYTHONPATH": str(root / "src")})
    blocks = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", result.stdout, re.M | re.S)}
    def resources(rule):
        line = re.search(r"resources: (.*)", blocks[rule]).group(1)
        return dict(item.split("=", 1) for item in line.split(", "))
    train = resources("train")
    assert {k: train[k] for k in ("runtime", "mem_mb", "gpu", "slurm_account", "slurm_partition")} == {
        "runtime": "2880", "mem_mb": "64000", "gpu": "1", "slurm_account": "proj42", "slurm_partition": "gpu"}
    preprocess = resources("preprocess")
    assert (preprocess["runtime"], preprocess["mem_mb"], preprocess["slurm_partition"]) == ("60", "8000", "cpu")


@pytest.fixture(scope="module")
def slurm_baseline(slurm_cluster, tmp_path_factory) -> Path:  # noqa: F811
    """MT-Net trained and evaluated through Slurm without interruption, epochs long enough (12
    steps) that a job cancelled when epoch 1's checkpoint appears is inside epoch 2."""
    root = copy_project(tmp_path_factory.mktemp("slurm") / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    params["data"]["synthetic"]["train_size"] = 24
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        snakemake_slurm(root, *TARGETS)
    finally:
        cancel_jobs_under(root)
    return root


@pytest.mark.slow
def test_preempted_training_resumes_to_the_uninterrupted_result(slurm, slurm_baseline, tmp_path):  # noqa: F811
    root = copy_of(slurm_baseline, tmp_path / "project")
    for path in (root / "models" / MODEL, root / "runs", root / ".snakemake"):
        shutil.rmtree(path)
    (root / TARGETS[1]).unlink()
    with open(root / "snakemake.log", "w") as log:
        process = subprocesses.start(["snakemake", *TARGETS, *SLURM_OPTIONS], 600, cwd=root, env={**ENV, **env_of(root)},
                                     stdout=log, stderr=subprocess.STDOUT)
        try:
            checkpoint = None
            deadline = time.monotonic() + 600
            while process.poll() is None and checkpoint is None and time.monotonic() < deadline:
                checkpoint = next((root / "runs" / MODEL).glob(f"*/{CHECKPOINT_FILE}"), None)
                time.sleep(0.05)
            training = sorted(squeue_jobs(root))  # this run's alone, though other jobs may run
            cancel = subprocesses.run(["scancel", *training], timeout=30)  # the preemption
            assert cancel.returncode == 0, cancel.stderr
            cancelled_at = load_checkpoint(checkpoint)["epoch"] if checkpoint else None  # later runs overwrite it
        except BaseException:
            subprocesses.stop(process)
            raise
        returncode = subprocesses.wait(process, lambda: (root / "snakemake.log").read_text())
        assert returncode == 0, (root / "snakemake.log").read_text()[-4000:]
    output = (root / "snakemake.log").read_text()
    assert checkpoint is not None and len(training) == 1, output[-3000:]
    assert cancelled_at == 1, "cancelled too late: make the epochs longer"
    assert f"SLURM-job '{training[0]}' failed, SLURM status is: 'CANCELLED'" in output
    assert re.search(r"Trying to restart job", output), output[-3000:]
    log = (root / "logs" / "train" / MODEL / "seed0.log").read_text()  # the resubmitted job's
    assert f"{MODEL} epoch 1/3" not in log and f"{MODEL} epoch 2/3" in log  # resumed at epoch 2
    assert sorted(p.name for p in (root / "runs" / MODEL).iterdir()) == sorted(
        p.name for p in (slurm_baseline / "runs" / MODEL).iterdir())  # the same run, resumed
    assert same_weights(weights(root), weights(slurm_baseline))
    assert metrics(root) == metrics(slurm_baseline)


@pytest.mark.slow
def test_two_rank_training_in_one_slurm_job_equals_torchrun(slurm, tmp_path):  # noqa: F811
    """MBMT_TRAIN_RANKS_PER_NODE=2: one Slurm job runs the training as two gloo ranks under torchrun;
    the same two-rank run under plain torchrun gives the same weights."""
    root = copy_project(tmp_path / "slurm")
    snakemake_slurm(root, TARGETS[0], MBMT_TRAIN_RANKS_PER_NODE="2")
    plain = copy_project(tmp_path / "torchrun")
    shutil.copytree(root / "data" / "processed", plain / "data" / "processed")
    result = subprocesses.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "-m", "mbmt", "train", MODEL, "--seed", "0", "--no-progress"], timeout=600, cwd=plain,
                              env={**ENV, "PYTHONPATH": str(plain / "src"), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    [slurm_run] = (root / "runs" / MODEL).glob(f"*/{CHECKPOINT_FILE}")
    assert load_checkpoint(slurm_run)["settings"]["world_size"] == 2
    assert same_weights(weights(root), weights(plain))


def test_unservable_requests_stop_before_the_first_submission(slurm, tmp_path):  # noqa: F811
    """The profile as a GPU cluster needs it, on this small CPU cluster without accounting: one
    message lists each problem with its fix, and nothing is submitted."""
    root = copy_project(tmp_path / "project")
    result = run(["snakemake", "--workflow-profile", "profiles/slurm", TARGETS[0]], root, check=False,
                 env={"PYTHONPATH": str(root / "src")})
    assert result.returncode != 0
    assert squeue_jobs(root) == set() and not (root / ".snakemake" / "slurm_logs").exists()
    message = result.stderr
    assert "this run cannot work on this Slurm cluster" in message
    assert "add --slurm-status-command squeue" in message
    assert f"add --max-threads {slurm.cpus}" in message
    assert "MBMT_SLURM_GPUS=0" in message
    if slurm.memory_mb < 64000:
        assert f"MBMT_SLURM_MAX_MEM_MB={slurm.memory_mb}" in message

"""A running Slurm cluster for the slow tests, or a skip with the reason (like conftest's sshd).

.ci/run starts a single-node cluster as root (.ci/slurm-up.sh: Debian's slurm-wlm and munge, no
GPUs, no accounting database); elsewhere the tests that need one are skipped, and in CI (CI=true)
they fail, naming what is missing (tests/provided.py). Each test's jobs are
cancelled when it ends (the jobs whose working directory is the test's own), so nothing of a
test keeps the node busy for the next, and nobody else's job is touched.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from provided import missing


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    cpus: int  # of the partition's smallest node
    memory_mb: int


def squeue_jobs(workdir: Path | None = None, under: Path | None = None) -> set[str]:
    """The ids of the jobs Slurm lists: all, those that run in ``workdir`` (a test's project), or
    those that run anywhere under ``under``."""
    result = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30)
    jobs = [line.split(" ", 1) for line in result.stdout.splitlines()]
    return {job for job, directory in jobs
            if (workdir is None or Path(directory) == Path(workdir)) and (under is None or Path(directory).is_relative_to(under))}


def cancel_jobs_under(path: Path) -> None:
    """Cancel the jobs that run under ``path`` (a test's directory): nobody else's."""
    left = squeue_jobs(under=path)
    if left:
        subprocess.run(["scancel", *sorted(left)], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    if shutil.which("sinfo") is None:
        missing("Slurm", "sinfo is not on PATH (.ci/run installs Debian's slurm-wlm and munge and runs .ci/slurm-up.sh)")
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%P %c %m %a"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        result = None
    if result is None:
        missing("a Slurm cluster", "sinfo does not answer in 15 s (start one as root with .ci/slurm-up.sh)")
    if result.returncode != 0:
        missing("a Slurm cluster", f"none answers ({result.stderr.strip()}; start one as root with .ci/slurm-up.sh)")
    for line in result.stdout.splitlines():
        partition, cpus, memory, available = line.split()
        if partition.endswith("*") and available == "up":
            return SlurmCluster(partition.rstrip("*"), int(cpus.rstrip("+")), int(memory.rstrip("+")))
    missing("a Slurm partition", f"the cluster has no default partition that is up: {result.stdout.strip()}")


@pytest.fixture
def slurm(slurm_cluster, tmp_path):
    """The cluster; the jobs this test submitted (from its tmp_path) are cancelled when it ends."""
    yield slurm_cluster
    cancel_jobs_under(tmp_path)

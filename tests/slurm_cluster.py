"""A running Slurm cluster for the slow tests, or a skip with the reason (like conftest's sshd).

.ci/run starts a single-node cluster as root (.ci/slurm-up.sh: Debian's slurm-wlm and munge, no
GPUs, no accounting database); elsewhere the tests that need one are skipped. Each test's jobs are
cancelled when it ends (by the job name Snakemake's run gave them, or by id), so nothing of a test
keeps the node busy for the next.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    cpus: int  # of the partition's smallest node
    memory_mb: int


def squeue_jobs() -> set[str]:
    result = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return set(result.stdout.split())


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    if shutil.which("sinfo") is None:
        pytest.skip("Slurm is not installed (CI: .ci/run installs slurm-wlm and munge and runs .ci/slurm-up.sh)")
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%P %c %m %a"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo does not answer (start a cluster as root with .ci/slurm-up.sh)")
    if result.returncode != 0:
        pytest.skip(f"no Slurm cluster answers ({result.stderr.strip()}; as root: .ci/slurm-up.sh)")
    for line in result.stdout.splitlines():
        partition, cpus, memory, available = line.split()
        if partition.endswith("*") and available == "up":
            return SlurmCluster(partition.rstrip("*"), int(cpus.rstrip("+")), int(memory.rstrip("+")))
    pytest.skip(f"the Slurm cluster has no default partition that is up: {result.stdout.strip()}")


@pytest.fixture
def slurm(slurm_cluster):
    """The cluster; the jobs this test submitted are cancelled when it ends."""
    before = squeue_jobs()
    yield slurm_cluster
    left = squeue_jobs() - before
    if left:
        subprocess.run(["scancel", *sorted(left)], capture_output=True, timeout=30)

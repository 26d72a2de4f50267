"""Checks of a run through Slurm (profiles/slurm) made before the first submission.

snakemake-executor-plugin-slurm fails silently in two ways that a cluster's configuration causes:
its default status command (``sacct`` wherever the binary exists) never sees a job end when the
cluster has no accounting database, and a job asking for more CPUs than any node of its partition
has stays PENDING (reason PartitionConfig) without a word. Memory or GPUs the partition lacks are
refused by sbatch, one job at a time. :func:`problems` finds all of them at once from ``sinfo``,
``sacct`` and ``scontrol``, each with its fix (docs/workflow.md, "SLURM").
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Partition:
    name: str
    cpus: int  # the most CPUs of any of its nodes
    memory_mb: int  # the most memory of any of its nodes
    gpus: bool  # some node has a gpu gres
    nodes: int


@dataclass(frozen=True)
class Request:
    rule: str
    partition: str | None  # None: the cluster's default partition
    threads: int
    memory_mb: int | None
    gpus: int
    nodes: int


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def partitions() -> tuple[dict[str, Partition], str | None]:
    """Every partition of the cluster (``sinfo``) and the name of the default one."""
    result = _run(["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G"])
    if result.returncode != 0:
        raise RuntimeError(f"sinfo failed: {result.stderr.strip()}")
    nodes: dict[str, dict] = {}
    default = None
    for line in result.stdout.splitlines():
        name, node, cpus, memory, gres = line.split("|")
        if name.endswith("*"):
            name = default = name[:-1]
        entry = nodes.setdefault(name, {"cpus": 0, "memory": 0, "gpus": False, "nodes": set()})
        entry["cpus"] = max(entry["cpus"], int(cpus.rstrip("+")))
        entry["memory"] = max(entry["memory"], int(memory.rstrip("+")))
        entry["gpus"] |= "gpu" in gres
        entry["nodes"].add(node)
    return {name: Partition(name, e["cpus"], e["memory"], e["gpus"], len(e["nodes"])) for name, e in nodes.items()}, default


def sacct_problem() -> str | None:
    """Why ``sacct`` cannot report job states here, or None where it can."""
    try:
        result = _run(["sacct", "-X", "-n", "-P", "-o", "JobIdRaw", "-S", "now-1minutes"])
    except FileNotFoundError:
        return "sacct is not installed"
    text = (result.stderr + result.stdout).strip()
    if result.returncode != 0 or "accounting storage is disabled" in text.lower():
        return f"sacct answers {text.splitlines()[0] if text else f'with exit status {result.returncode}'!r}"
    return None


def min_job_age() -> int | None:
    """slurmctld's MinJobAge (seconds): how long squeue still lists a finished job."""
    result = _run(["scontrol", "show", "config"])
    match = re.search(r"^MinJobAge\s*=\s*(\d+)", result.stdout, flags=re.M)
    return int(match.group(1)) if match else None


def status_problems(status_command: str | None, init_seconds: int, sacct: str | None, job_age: int | None) -> list[str]:
    """The plugin's status command cannot see jobs end: ``sacct`` without accounting, or ``squeue``
    that the plugin replaces by ``sacct`` when MinJobAge < 3 x the first status check's delay."""
    if sacct is None:
        return []
    if status_command != "squeue":
        return [f"Slurm's accounting is not available here ({sacct}), so the status command "
                f"{status_command or 'sacct'} never sees a job end and Snakemake would wait forever: "
                "add --slurm-status-command squeue"]
    if job_age is not None and job_age < 3 * init_seconds:
        return [f"with squeue as the status command, the plugin falls back to sacct (which cannot work here: "
                f"{sacct}) because MinJobAge={job_age} s < 3 x --slurm-init-seconds-before-status-checks "
                f"{init_seconds}: give --slurm-init-seconds-before-status-checks {max(1, job_age // 3)} or less"]
    return []


def request_problems(requests: list[Request], parts: dict[str, Partition], default: str | None) -> list[str]:
    """Requests no node of their partition can meet, one line per rule and kind."""
    found: dict[tuple[str, str], str] = {}
    for request in requests:
        name = request.partition or default
        partition = parts.get(name) if name else None
        if partition is None:
            found[(request.rule, "partition")] = (
                f"rule {request.rule}: partition {name!r} does not exist (sinfo lists {', '.join(sorted(parts))}): "
                "set MBMT_SLURM_PARTITION / MBMT_SLURM_GPU_PARTITION")
            continue
        if request.threads > partition.cpus:
            found[(request.rule, "threads")] = (
                f"rule {request.rule}: {request.threads} threads (sbatch --cpus-per-task) but the nodes of partition "
                f"{partition.name} have at most {partition.cpus} CPUs; Slurm would keep the job PENDING forever "
                f"(reason PartitionConfig): add --max-threads {partition.cpus}")
        if request.memory_mb and request.memory_mb > partition.memory_mb:
            found[(request.rule, "memory")] = (
                f"rule {request.rule}: mem_mb={request.memory_mb} but the nodes of partition {partition.name} have at "
                f"most {partition.memory_mb} MB: set MBMT_SLURM_MAX_MEM_MB={partition.memory_mb}")
        if request.gpus > 0 and not partition.gpus:
            found[(request.rule, "gpus")] = (
                f"rule {request.rule}: gpu={request.gpus} but partition {partition.name} has no GPUs (gres): set "
                "MBMT_SLURM_GPU_PARTITION to a GPU partition, or MBMT_SLURM_GPUS=0 to train on its CPUs")
        if request.nodes > partition.nodes:
            found[(request.rule, "nodes")] = (
                f"rule {request.rule}: {request.nodes} nodes but partition {partition.name} has {partition.nodes}: "
                "set MBMT_TRAIN_NODES")
    return list(found.values())


def problems(requests: list[Request], status_command: str | None, init_seconds: int) -> list[str]:
    """Everything that would make the run fail or hang, from the cluster's own answers."""
    parts, default = partitions()
    return (status_problems(status_command, init_seconds, sacct_problem(), min_job_age())
            + request_problems(requests, parts, default))

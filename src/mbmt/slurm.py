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
import shutil
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


def installed(tool: str) -> bool:
    """Whether ``tool`` is on PATH (the plugin asks ``which``)."""
    return shutil.which(tool) is not None


def sacct_problem() -> str | None:
    """Why an installed ``sacct`` cannot report job states here, or None where it can."""
    try:
        result = _run(["sacct", "-X", "-n", "-P", "-o", "JobIdRaw", "-S", "now-1minutes"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sacct cannot be run ({exc})"
    text = (result.stderr + result.stdout).strip()
    if result.returncode != 0 or "accounting storage is disabled" in text.lower():
        return f"sacct answers {text.splitlines()[0] if text else f'with exit status {result.returncode}'!r}"
    return None


# MinJobAge as the plugin reads it (job_status_query.get_min_job_age): a number and an optional
# unit; h/hour/hours are hours, anything else (s, sec, secs, second, seconds, none, or a unit it does
# not know) seconds. scontrol itself prints "MinJobAge = 300 sec".
_MIN_JOB_AGE = re.compile(r"^\s*MinJobAge\s*=\s*(\d+)\s*([A-Za-z]*)", flags=re.M)
_HOURS = ("h", "hour", "hours")


def parse_min_job_age(config: str) -> int | None:
    """MinJobAge in seconds from ``scontrol show config``'s output, read as the plugin reads it."""
    match = _MIN_JOB_AGE.search(config)
    if not match:
        return None
    return int(match[1]) * (3600 if match[2].lower() in _HOURS else 1)


def min_job_age() -> tuple[int | None, str | None]:
    """slurmctld's MinJobAge (seconds), how long squeue still lists a finished job; or None and
    why it cannot be read (then the plugin cannot read it either)."""
    try:
        result = _run(["scontrol", "show", "config"])
    except FileNotFoundError:
        return None, "scontrol is not installed"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scontrol cannot be run ({exc})"
    if result.returncode != 0:
        text = (result.stderr + result.stdout).strip()
        return None, f"scontrol show config answers {text.splitlines()[0] if text else result.returncode!r}"
    seconds = parse_min_job_age(result.stdout)
    return (seconds, None) if seconds is not None else (None, "scontrol show config lists no MinJobAge")


def status_command_used(status_command: str | None, init_seconds: int, sacct_installed: bool,
                        job_age: int | None) -> str:
    """The status command the plugin ends up using (its own rule, snakemake_executor_plugin_slurm
    2.8: the default is sacct where installed, else squeue; squeue is replaced by sacct when
    MinJobAge is unknown or below 3 x --slurm-init-seconds-before-status-checks and sacct is
    installed; sacct is replaced by squeue when not installed)."""
    command = status_command or ("sacct" if sacct_installed else "squeue")
    if command == "squeue" and (job_age is None or job_age < 3 * init_seconds) and sacct_installed:
        command = "sacct"
    if command == "sacct" and not sacct_installed:
        command = "squeue"
    return command


def status_problems(status_command: str | None, init_seconds: int, *, sacct_installed: bool,
                    sacct: str | None, job_age: int | None, job_age_problem: str | None = None) -> list[str]:
    """The plugin's status command never sees jobs end: it ends up on ``sacct`` (status_command_used)
    and ``sacct`` cannot report here (``sacct``: why; None where it works)."""
    if status_command_used(status_command, init_seconds, sacct_installed, job_age) != "sacct" or sacct is None:
        return []
    cause = f"Slurm's accounting is not available here ({sacct}), yet the plugin would poll job states with sacct"
    if job_age is None:
        why = job_age_problem or "MinJobAge unknown"
        return [f"{cause}, because it cannot read MinJobAge ({why}) and then uses sacct whatever the status command: "
                "run Snakemake where `scontrol show config` works (a Slurm submit host), or ask the cluster's "
                "administrators to enable accounting; Snakemake would wait forever"]
    squeue = "" if status_command == "squeue" else "add --slurm-status-command squeue"
    if job_age >= 3 * init_seconds:
        return [f"{cause}: {squeue} (MinJobAge={job_age} s is long enough for squeue); Snakemake would wait forever"]
    if job_age < 3:
        return [f"{cause}, because MinJobAge={job_age} s is too short for squeue (the plugin needs at least 3 x "
                "--slurm-init-seconds-before-status-checks): ask the cluster's administrators to raise MinJobAge "
                "or enable accounting; Snakemake would wait forever"]
    init = f"--slurm-init-seconds-before-status-checks {job_age // 3} or less"
    fix = f"{squeue} and {init}" if squeue else f"give {init}"
    return [f"{cause}, because MinJobAge={job_age} s < 3 x --slurm-init-seconds-before-status-checks "
            f"{init_seconds} (with squeue the plugin falls back to sacct): {fix}; Snakemake would wait forever"]


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
    sacct_installed = installed("sacct")
    job_age, job_age_problem = min_job_age()
    found = status_problems(status_command, init_seconds, sacct_installed=sacct_installed,
                            sacct=sacct_problem() if sacct_installed else None, job_age=job_age,
                            job_age_problem=job_age_problem)
    if not installed("sinfo"):
        return [*found, "sinfo is not installed here, so no partition can be checked: run Snakemake on a Slurm "
                        "submit host (where sbatch, squeue, sinfo and scontrol are)"]
    parts, default = partitions()
    return found + request_problems(requests, parts, default)

"""The checks made before a Slurm run's first submission (src/mbmt/slurm.py), on made-up clusters."""

import pytest

from mbmt.slurm import (Partition, Request, min_job_age, parse_min_job_age, problems, request_problems,
                        status_command_used, status_problems)

PARTS = {"cpu": Partition("cpu", cpus=2, memory_mb=4000, gpus=False, nodes=1),
         "gpu": Partition("gpu", cpus=32, memory_mb=256000, gpus=True, nodes=4)}


DISABLED = "sacct answers 'Slurm accounting storage is disabled'"


def status(command, job_age, *, installed=True, sacct=DISABLED, init=40, why=None):
    return status_problems(command, init, sacct_installed=installed, sacct=sacct, job_age=job_age, job_age_problem=why)


def test_status_command_that_cannot_see_jobs_end():
    assert status("sacct", 300, sacct=None) == []  # accounting works
    [problem] = status("sacct", 300)
    assert "add --slurm-status-command squeue" in problem
    assert status("squeue", 300) == []
    # MinJobAge below 3 x the first check's delay: the plugin would fall back to sacct.
    [problem] = status("squeue", 60)
    assert "give --slurm-init-seconds-before-status-checks 20 or less" in problem
    [problem] = status(None, 60)  # the plugin's default where sacct is installed: sacct
    assert "add --slurm-status-command squeue and --slurm-init-seconds-before-status-checks 20 or less" in problem


def test_the_plugins_fallback_rule_is_followed():
    # Without sacct the plugin uses squeue whatever was asked, and squeue works without accounting.
    assert status(None, 60, installed=False) == status("sacct", None, installed=False) == []
    assert status_command_used("sacct", 40, False, 300) == "squeue"
    # MinJobAge unreadable: the plugin falls back to sacct even when squeue was asked for.
    assert status_command_used("squeue", 40, True, None) == "sacct"
    [problem] = status("squeue", None, why="scontrol is not installed")
    assert "cannot read MinJobAge (scontrol is not installed)" in problem
    assert status("squeue", None, sacct=None) == []  # ... which is fine where accounting works
    assert status_command_used("squeue", 40, True, 120) == "squeue"  # exactly 3 x: no fallback
    assert status_command_used("squeue", 40, True, 119) == "sacct"


@pytest.mark.parametrize(("line", "seconds"), [
    ("MinJobAge               = 300 sec", 300), ("MinJobAge = 1h", 3600), ("MinJobAge=2 hours", 7200),
    ("MinJobAge = 3600", 3600), ("MinJobAge = 5 seconds", 5), ("SlurmctldPort = 6817", None),
])
def test_min_job_age_is_read_as_the_plugin_reads_it(line, seconds):
    assert parse_min_job_age(f"Configuration data as of 2026-01-01T00:00:00\n{line}\nMaxJobCount = 10000\n") == seconds


def fake_tools(folder, **scripts):
    """Executables named after the keys, each a shell script with the value as its body."""
    folder.mkdir()
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return str(folder)


SINFO = "echo 'cpu*|n1|2|4000|(null)'"


def test_a_cluster_without_accounting_and_with_an_hour_of_min_job_age(tmp_path, monkeypatch):
    bin_dir = fake_tools(tmp_path / "bin", sinfo=SINFO, sacct="echo 'Slurm accounting storage is disabled' >&2; exit 1",
                         scontrol="echo 'MinJobAge               = 1h'")
    monkeypatch.setenv("PATH", bin_dir)
    [problem] = problems([], None, 40)  # 3600 s >= 120 s: squeue works, the default sacct does not
    assert "add --slurm-status-command squeue (MinJobAge=3600 s" in problem
    assert problems([], "squeue", 40) == []


def test_missing_scontrol_or_sinfo_is_a_problem_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_tools(tmp_path / "bin", sinfo=SINFO, sacct="exit 1"))
    assert min_job_age() == (None, "scontrol is not installed")
    [problem] = problems([], "squeue", 40)
    assert "cannot read MinJobAge (scontrol is not installed)" in problem
    monkeypatch.setenv("PATH", fake_tools(tmp_path / "empty"))
    assert min_job_age() == (None, "scontrol is not installed")
    [problem] = problems([], None, 40)  # no sacct either: squeue, nothing to say about status
    assert problem.startswith("sinfo is not installed here")


def test_requests_no_node_can_meet():
    fits = Request("train", "gpu", threads=8, memory_mb=64000, gpus=1, nodes=2)
    assert request_problems([fits], PARTS, "cpu") == []
    too_big = Request("train", None, threads=8, memory_mb=64000, gpus=1, nodes=2)
    problems = request_problems([too_big, too_big], PARTS, "cpu")  # the default partition; one line each
    assert len(problems) == 4
    assert any("add --max-threads 2" in p for p in problems)
    assert any("MBMT_SLURM_MAX_MEM_MB=4000" in p for p in problems)
    assert any("MBMT_SLURM_GPUS=0" in p for p in problems)
    assert any("2 nodes but partition cpu has 1" in p for p in problems)
    [unknown] = request_problems([Request("evaluate", "a100", 1, None, 0, 1)], PARTS, "cpu")
    assert "partition 'a100' does not exist" in unknown

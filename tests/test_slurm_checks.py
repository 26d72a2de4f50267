"""The checks made before a Slurm run's first submission (src/mbmt/slurm.py), on made-up clusters."""

from mbmt.slurm import Partition, Request, request_problems, status_problems

PARTS = {"cpu": Partition("cpu", cpus=2, memory_mb=4000, gpus=False, nodes=1),
         "gpu": Partition("gpu", cpus=32, memory_mb=256000, gpus=True, nodes=4)}


def test_status_command_that_cannot_see_jobs_end():
    disabled = "sacct answers 'Slurm accounting storage is disabled'"
    assert status_problems("sacct", 40, None, 300) == []  # accounting works
    [problem] = status_problems("sacct", 40, disabled, 300)
    assert "add --slurm-status-command squeue" in problem
    assert status_problems("squeue", 40, disabled, 300) == []
    # MinJobAge below 3 x the first check's delay: the plugin would fall back to sacct.
    [problem] = status_problems("squeue", 40, disabled, 60)
    assert "--slurm-init-seconds-before-status-checks 20" in problem


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

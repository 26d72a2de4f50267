"""benchmarks/gpu_check.sh runs every step on CPU at a tiny size, as it will on the GPU machine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import subprocesses

REPO = Path(__file__).resolve().parents[1]
MODELS = ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial", "mbmt_full_pretrained", "mbmt_full_scratch", "mtan")


def most_trainings_at_once(snakemake_output: str) -> int:
    """The most training jobs running at the same time, from Snakemake's job start/finish lines."""
    running = most = 0
    for line in snakemake_output.splitlines():
        if re.fullmatch(r"(local)?rule (train|train_from_st):", line):
            running += 1
            most = max(most, running)
        elif re.match(r"Finished jobid: \d+ \(Rule: (train|train_from_st)\)", line):
            running -= 1
    return most


def test_most_trainings_at_once_reads_snakemakes_log():
    log = "rule train:\nlocalrule train:\nFinished jobid: 3 (Rule: train)\nrule train_from_st:\n" \
          "Finished jobid: 4 (Rule: train)\nFinished jobid: 5 (Rule: train_from_st)\nrule evaluate:\n"
    assert most_trainings_at_once(log) == 2


@pytest.mark.slow
@pytest.mark.timeout(1900)  # the script's own limits on a shared CPU (four times each step's), and its start
def test_gpu_check_runs_every_step_on_cpu(tmp_path):
    results = tmp_path / "results"
    run = subprocesses.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(results), "--device", "cpu", "--tiny"],
                           timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = dict(re.findall(r"^(\w+) rc=(\d+)", (results / "steps.txt").read_text(), re.MULTILINE))
    assert steps == dict.fromkeys(("env", "bench_bf16", "workflow", "placement", "concurrent", "bench_fp32",
                                         "bench_weighting"), "0"), steps

    for name in ("bench_bf16", "bench_fp32", "concurrent_st_ss", "concurrent_mbmt_partial"):
        text = (results / f"{name}.txt").read_text()
        assert "| tiny | st_ss |" in text or "| tiny | mbmt_partial |" in text, name
        assert "Estimated full protocol, tiny" in text and "- one job at a time: " in text, name
        assert "- default profile, gpu_mem_gb=80 " in text, name

    weighting = (results / "bench_weighting.txt").read_text()
    assert all(f"| {method} |" in weighting for method in ("dwa", "gls", "upgrad", "nash_mtl")), weighting
    # The whole DAG ran through Snakemake, trainings sharing the device under the default profile.
    workflow = results / "workflow"
    assert {path.parent.name for path in (workflow / "metrics").glob("*/seed0.json")} == set(MODELS)
    assert (workflow / "reports" / "README.md").is_file()
    assert {path.parent.name for path in (workflow / "benchmarks" / "results" / "train").glob("*/seed0.tsv")} == set(MODELS)
    assert most_trainings_at_once((results / "workflow.txt").read_text()) >= 2
    # No GPU here and train.device: cpu in the tiny preset: no job placed itself.
    assert "no job placed itself" in (results / "placement.txt").read_text()


def test_gpu_check_refuses_missing_arguments():
    run = subprocesses.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], timeout=60)
    assert run.returncode == 2 and "usage: bash benchmarks/gpu_check.sh RESULTS_DIR" in run.stderr


def test_gpu_check_reports_where_each_job_ran(tmp_path):
    """The placement step with a fake nvidia-smi (two GPUs, the first busy) and a job log: the node's
    table, where a training would go now, and each job's placement line."""
    from test_gpus import FAKE_NVIDIA_SMI

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    log = tmp_path / "results" / "workflow" / "logs" / "train" / "st_ss" / "seed0.log"
    log.parent.mkdir(parents=True)
    log.write_text("mbmt train: GPU 1 of 2 on node: 79.1 of 79.6 GB free, 0 GB claimed by other jobs\nepoch 1/2\n")
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    run = subprocesses.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path / "results"), "--device", "cpu",
                            "--part", "placement"], timeout=120,
                           env={**env, "PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("GPU 0: 19.5 of 79.6 GB free") and lines[1].startswith("GPU 1: 79.1 of 79.6 GB free")
    assert "a training started now would run on GPU 1" in lines
    assert "train/st_ss/seed0.log:mbmt train: GPU 1 of 2 on node: 79.1 of 79.6 GB free, 0 GB claimed by other jobs" in lines
    log.write_text("epoch 1/2\n")  # a job that did not place itself (train.device: cpu)
    run = subprocesses.run(run.args, timeout=120, env={**env, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 0 and run.stdout.splitlines()[-1].startswith("no job placed itself"), run.stdout + run.stderr

"""benchmarks/gpu_check.sh runs every step on CPU at a tiny size, as it will on the GPU machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

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
def test_gpu_check_runs_every_step_on_cpu(tmp_path):
    results = tmp_path / "results"
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(results), "--device", "cpu", "--tiny"],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = dict(re.findall(r"^(\w+) rc=(\d+)", (results / "steps.txt").read_text(), re.MULTILINE))
    assert steps == dict.fromkeys(("env", "bench_bf16", "workflow", "concurrent", "bench_fp32"), "0"), steps

    for name in ("bench_bf16", "bench_fp32", "concurrent_st_ss", "concurrent_mbmt_partial"):
        text = (results / f"{name}.txt").read_text()
        assert "| tiny | st_ss |" in text or "| tiny | mbmt_partial |" in text, name
        assert "Estimated full protocol, tiny" in text and "- one job at a time: " in text, name
        assert "- default profile, gpu_mem_gb=80 " in text, name

    # The whole DAG ran through Snakemake, trainings sharing the device under the default profile.
    workflow = results / "workflow"
    assert {path.parent.name for path in (workflow / "metrics").glob("*/seed0.json")} == set(MODELS)
    assert (workflow / "reports" / "README.md").is_file()
    assert {path.parent.name for path in (workflow / "benchmarks" / "results" / "train").glob("*/seed0.tsv")} == set(MODELS)
    assert most_trainings_at_once((results / "workflow.txt").read_text()) >= 2


def test_gpu_check_refuses_missing_arguments():
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True)
    assert run.returncode == 2 and "usage: bash benchmarks/gpu_check.sh RESULTS_DIR" in run.stderr

"""Placement of train/evaluate jobs on the GPUs of a node (mbmt.gpus), on CPU: the choice against
faked device tables, the claims with real processes (flock), and the wiring through `mbmt` with a
fake nvidia-smi. No GPU is used or needed."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import subprocesses
import yaml
from mbmt import gpus
from mbmt.gpus import Gpu, choose_gpu, held_claims, place

REPO = Path(__file__).resolve().parents[1]


def fill(count: int, size: float, requests: list[float]) -> list[int | None]:
    """Where each of ``requests`` goes on ``count`` idle GPUs of ``size`` GB, the earlier ones still
    running (their memory claimed, not yet allocated: free stays at ``size``)."""
    claimed = [0.0] * count
    placed = []
    for request in requests:
        chosen = choose_gpu([size] * count, [size] * count, claimed, request)
        placed.append(chosen)
        if chosen is not None:
            claimed[chosen] += request
    return placed


def test_jobs_spread_over_idle_gpus_one_each_first():
    # The paper's DAG, one seed: six trainings straight from the data start together.
    assert fill(8, 80, [12] * 6) == [0, 1, 2, 3, 4, 5]
    # Sixteen on 8 GPUs: two each, none left out.
    placed = fill(8, 80, [12] * 16)
    assert sorted(placed) == sorted(list(range(8)) * 2)


def test_memory_accounting_is_per_gpu():
    # 8 x 80 GB holds 6 trainings of 12 GB per GPU (72): the 49th fits nowhere and waits, though the
    # node's total (640) has room for 53: Snakemake counts the node, the placement each GPU.
    placed = fill(8, 80, [12] * 49)
    assert placed[:48].count(None) == 0 and placed[48] is None
    assert all(placed.count(i) == 6 for i in range(8))
    # An evaluation (6 GB) still fits in the 8 GB each GPU has left.
    claimed = [72.0] * 8
    assert choose_gpu([80.0] * 8, [80.0] * 8, claimed, 6) == 0


def test_the_gpu_with_the_most_memory_left_wins():
    # Free memory seen now counts: a process outside the workflow holds 50 GB of GPU 0.
    assert choose_gpu([30, 80, 80], [80, 80, 80], [0, 24, 12], 12) == 2
    assert choose_gpu([30, 80], [80, 80], [0, 60], 12) == 0  # GPU 1: 20 left by claims, GPU 0: 30 free
    # Claims count before their jobs allocate: GPU 1 shows all free but 70 GB are claimed.
    assert choose_gpu([40, 80], [80, 80], [30, 70], 12) == 0
    # A request no GPU can hold: with claims held, wait; with none, take the one with most left.
    assert choose_gpu([80, 80], [80, 80], [72, 72], 12) is None
    assert choose_gpu([20, 30], [24, 40], [0, 0], 48) == 1


def test_one_gpu_takes_every_job_it_holds():
    assert fill(1, 80, [12] * 7) == [0] * 6 + [None]


def test_choose_gpu_refuses_tables_that_do_not_match():
    # Its own message, not max()'s "arg is an empty sequence" on no GPU at all.
    message = "one free, total and claimed figure per GPU, and at least one GPU"
    with pytest.raises(ValueError, match=message):
        choose_gpu([80, 80], [80], [0, 0], 12)
    with pytest.raises(ValueError, match=message):
        choose_gpu([], [], [], 12)


def table(*sizes: float):
    return lambda: [Gpu(index, size, size) for index, size in enumerate(sizes)]


@pytest.mark.parametrize("device, environ, reason", [
    ("cpu", {}, None),
    ("auto", {"CUDA_VISIBLE_DEVICES": "3"}, "CUDA_VISIBLE_DEVICES=3 is set"),
    ("cuda", {"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES= is set"),
    ("auto", {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}, "torchrun"),
])
def test_nothing_changes_where_the_gpu_is_given(tmp_path, capsys, device, environ, reason):
    before = dict(environ)
    assert place("train", device, gpus=table(80, 80), lock_dir=tmp_path, environ=environ) is None
    assert environ == before  # CUDA_VISIBLE_DEVICES as the user, Slurm or torchrun left it
    assert not list(tmp_path.rglob("*.claim"))
    err = capsys.readouterr().err
    assert (reason in err) if reason else err == ""


def test_nothing_changes_on_one_gpu_or_none(tmp_path, capsys):
    environ: dict[str, str] = {}
    assert place("train", "auto", gpus=table(80), lock_dir=tmp_path, environ=environ) is None
    assert "one GPU on this node" in capsys.readouterr().err
    assert place("evaluate", "auto", gpus=table(), lock_dir=tmp_path, environ=environ) is None
    assert environ == {} and not list(tmp_path.rglob("*.claim"))


def test_a_request_that_is_not_a_number_is_an_error(tmp_path):
    from mbmt.errors import MbmtError

    with pytest.raises(MbmtError, match="MBMT_GPU_MEM_GB='12GB' is not a number of GB"):
        place("train", "auto", gpus=table(80, 80), lock_dir=tmp_path, environ={gpus.REQUEST_ENV: "12GB"})


def test_place_sets_the_device_and_claims_the_request(tmp_path):
    environ = {gpus.REQUEST_ENV: "30"}
    first = place("train", "auto", gpus=table(80, 80), lock_dir=tmp_path, environ=environ)
    assert environ["CUDA_VISIBLE_DEVICES"] == "0" and environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    second_env = {}  # evaluate's default request: 6 GB
    second = place("evaluate", "auto", gpus=table(80, 80), lock_dir=tmp_path, environ=second_env)
    assert second_env["CUDA_VISIBLE_DEVICES"] == "1"
    directory = tmp_path / socket.gethostname()
    assert held_claims(directory) == {0: 30.0, 1: 6.0}
    first.release()
    assert held_claims(directory) == {1: 6.0}
    second.release()
    assert held_claims(directory) == {} and not list(directory.glob("*.claim"))


CLAIMANT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mbmt.gpus import Gpu, claim_gpu
    table = lambda: [Gpu(0, 80.0, 80.0), Gpu(1, 80.0, 80.0)]
    claim = claim_gpu(float(sys.argv[2]), table, Path(sys.argv[1]), wait_seconds=0.1,
                      say=lambda text: print(text, flush=True))
    print("CLAIMED", claim.index, flush=True)
    time.sleep(600)
""")


def claimant(lock_dir: Path, request: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIMANT, str(lock_dir), str(request)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def claimed_index(process: subprocess.Popen) -> int:
    for line in process.stdout:
        if line.startswith("CLAIMED"):
            return int(line.split()[1])
    raise AssertionError(f"the claimant ended ({process.wait(timeout=30)}) without claiming")


def test_claims_with_real_processes_and_a_killed_claimant_frees_its_gpu(tmp_path):
    """Two jobs of 50 GB on two 80 GB GPUs get one each; a third waits, and gets the GPU of the first
    once that is killed with SIGKILL (the kernel drops its flock; nothing released it)."""
    processes = []
    try:
        first = claimant(tmp_path, 50)
        processes.append(first)
        assert claimed_index(first) == 0
        second = claimant(tmp_path, 50)
        processes.append(second)
        assert claimed_index(second) == 1
        third = claimant(tmp_path, 50)
        processes.append(third)
        assert third.stdout.readline().startswith("waiting for GPU memory: 50 GB fits on none of the 2 GPUs")
        time.sleep(0.5)
        assert third.poll() is None and held_claims(tmp_path / socket.gethostname()) == {0: 50.0, 1: 50.0}
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert claimed_index(third) == 0
    finally:
        for process in processes:
            process.kill()
            process.wait()


FAKE_NVIDIA_SMI = """#!/bin/sh
# nvidia-smi --query-gpu=index,memory.free,memory.total --format=csv,noheader,nounits, faked
echo "0, 20000, 81559"
echo "1, 81000, 81559"
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path) -> dict[str, str]:
    """The environment of a command that finds a fake nvidia-smi listing two 80 GB GPUs, 0 busy."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(stat.S_IRWXU)
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(REPO / "src")}


def test_query_gpus_reads_nvidia_smi(fake_nvidia_smi, monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi["PATH"])
    assert gpus.query_gpus() == [Gpu(0, 20000 / 1024, 81559 / 1024), Gpu(1, 81000 / 1024, 81559 / 1024)]


def test_mbmt_evaluate_places_itself_before_it_runs(project, fake_nvidia_smi):
    """Through the CLI: `mbmt evaluate` claims the freer GPU with the request the Snakefile passes,
    and leaves CUDA_VISIBLE_DEVICES to the user where it is set (its own error comes after: no model)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["device"] = "auto"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fake_nvidia_smi["MBMT_GPU_LOCK_DIR"] = str(project / "gpu-locks")
    placed = subprocesses.run(["mbmt", "evaluate", "st_ss"], timeout=120, cwd=project,
                              env={**fake_nvidia_smi, gpus.REQUEST_ENV: "7"})
    assert placed.returncode == 2 and "trained model not found" in placed.stderr, placed.stderr
    assert "mbmt evaluate: GPU 1 of 2 on " in placed.stderr and "7 GB claimed by this one" in placed.stderr
    given = subprocesses.run(["mbmt", "evaluate", "st_ss"], timeout=120, cwd=project,
                             env={**fake_nvidia_smi, "CUDA_VISIBLE_DEVICES": "0"})
    assert "no GPU placement: CUDA_VISIBLE_DEVICES=0 is set" in given.stderr and "GPU 1 of 2" not in given.stderr
    directory = project / "gpu-locks" / socket.gethostname()
    assert directory.is_dir() and held_claims(directory) == {}  # the claim was made there, and released at exit

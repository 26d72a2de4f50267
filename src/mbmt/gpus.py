"""Which GPU of a node a training or evaluation job runs on, when several jobs share the node.

Snakemake's local executor starts jobs as subprocesses and counts the `gpu_mem_gb` resource, but it
does not assign GPUs: without this module every job would use the node's first GPU. So each
`mbmt train` / `mbmt evaluate` places itself, before it creates any CUDA context (`claim_gpu`,
called by mbmt.cli):

- it asks `nvidia-smi` (no CUDA context) for each GPU's free and total memory;
- it reads the claims the node's running jobs hold: one file per job under LOCK_DIR/HOST/
  (LOCK_DIR: $MBMT_GPU_LOCK_DIR, by default /tmp/mbmt-gpus-UID), holding the job's request in GB, on which the job holds an exclusive
  ``flock(2)`` while it runs. The kernel releases the lock when the process ends, however it ends
  (kill -9 included), so a claim whose file can be locked is stale and is removed;
- `choose_gpu` (a pure function) picks the GPU with the most memory left among those on which the
  job's request still fits, left = min(free now, total - claimed) (a job just started has claimed
  its memory before allocating it; a process outside the workflow shows in the free memory);
- the job claims that GPU (its own claim file, locked) and sets ``CUDA_VISIBLE_DEVICES`` to it
  (with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, nvidia-smi's numbering), so torch sees it as cuda:0.

Choosing and claiming happen under one node-wide lock (LOCK_DIR/HOST.lock), so two jobs
starting together see each other's claims. If the request fits on no GPU but other jobs hold
claims, the job waits for one to end (Snakemake's count of the node total cannot see how memory
fragments over GPUs); if no job holds a claim it takes the GPU with the most memory left.

The request is the job's `gpu_mem_gb` resource, passed by the Snakefile as MBMT_GPU_MEM_GB
(default: DEFAULT_REQUEST_GB[stage]). Nothing changes (no claim, no environment change) when:
train.device is cpu; ``CUDA_VISIBLE_DEVICES`` is already set (by the user, or by Slurm for a job it
gave GPUs to); the process is one of torchrun's (WORLD_SIZE > 1: LOCAL_RANK picks the GPU); or
nvidia-smi lists at most one GPU (or none, or is missing).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mbmt.errors import MbmtError

# Node-wide, not per project: the jobs of every checkout on the node (and of `dvc queue start -j N`,
# whose experiments run in temporary copies of the repository) see each other's claims. Per user:
# another user's jobs show in the free memory nvidia-smi reports.
LOCK_DIR = Path(os.environ.get("MBMT_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"mbmt-gpus-{os.getuid()}")
REQUEST_ENV = "MBMT_GPU_MEM_GB"
# The profile's requests (profiles/default/config.yaml set-resources), for a command run by hand.
DEFAULT_REQUEST_GB = {"train": 12.0, "evaluate": 6.0}
WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it: its index (PCI bus order), free and total memory in GB."""

    index: int
    free_gb: float
    total_gb: float


def choose_gpu(free_gb: Sequence[float], total_gb: Sequence[float], claimed_gb: Sequence[float],
               request_gb: float) -> int | None:
    """The position of the GPU a job requesting ``request_gb`` should run on, or None to wait.

    Per GPU: ``free_gb`` measured now, ``total_gb`` its size, ``claimed_gb`` the sum of the running
    jobs' claims on it. Memory left = min(free, total - claimed). Of the GPUs whose memory left holds
    the request, the one with the most left (the lowest position on a tie); if none holds it, None
    while some claim is held (one will end), else the GPU with the most left (nothing to wait for).
    """
    if not (len(free_gb) == len(total_gb) == len(claimed_gb)) or not free_gb:
        raise ValueError("one free, total and claimed figure per GPU, and at least one GPU")
    left = [min(free, total - claimed) for free, total, claimed in zip(free_gb, total_gb, claimed_gb)]
    fitting = [i for i, room in enumerate(left) if room >= request_gb]
    if not fitting:
        if any(claimed > 0 for claimed in claimed_gb):
            return None
        fitting = list(range(len(left)))
    return max(fitting, key=lambda i: (left[i], -i))


def query_gpus() -> list[Gpu]:
    """The node's GPUs from nvidia-smi (no CUDA context is created); [] without nvidia-smi or GPUs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.free,memory.total",
                                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    gpus = []
    for line in result.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        try:
            gpus.append(Gpu(int(fields[0]), float(fields[1]) / 1024, float(fields[2]) / 1024))
        except (IndexError, ValueError):  # "[N/A]" (e.g. MIG): no placement from a table we cannot read
            return []
    return gpus


class Claim:
    """A job's claim on GPU ``index``: its file, exclusively flock-ed, released with the process."""

    def __init__(self, index: int, request_gb: float, file):
        self.index, self.request_gb, self._file = index, request_gb, file

    def release(self) -> None:
        if self._file is not None:
            path = Path(self._file.name)
            path.unlink(missing_ok=True)
            self._file.close()  # closing releases the flock
            self._file = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def held_claims(directory: Path) -> dict[int, float]:
    """GB claimed per GPU index by the live claims in ``directory``; stale claim files are removed.

    Call with the node lock held: claim files are created (and locked) only under it, so a file whose
    lock can be taken belongs to a process that has ended.
    """
    claimed: dict[int, float] = {}
    for path in sorted(directory.glob("gpu*.claim")):
        try:
            file = open(path, "r+")
        except FileNotFoundError:  # released meanwhile
            continue
        with file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its holder runs: count it
                index = int(path.name[3:].split("-", 1)[0])
                try:
                    claimed[index] = claimed.get(index, 0.0) + float(file.read() or 0)
                except ValueError:
                    pass
                continue
            path.unlink(missing_ok=True)  # its holder ended without releasing it
    return claimed


def claim_gpu(request_gb: float, gpus: Callable[[], list[Gpu]] = query_gpus, lock_dir: Path = LOCK_DIR,
              wait_seconds: float = WAIT_SECONDS, say: Callable[[str], None] = print) -> Claim:
    """Choose a GPU for a job requesting ``request_gb`` and claim it (waiting while none fits)."""
    directory = Path(lock_dir) / socket.gethostname()
    directory.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        with open(directory.parent / f"{directory.name}.lock", "a") as node_lock:
            fcntl.flock(node_lock, fcntl.LOCK_EX)  # blocks while another job chooses
            table = gpus()
            claimed = held_claims(directory)
            chosen = choose_gpu([g.free_gb for g in table], [g.total_gb for g in table],
                                [claimed.get(g.index, 0.0) for g in table], request_gb)
            if chosen is not None:
                gpu = table[chosen]
                path = directory / f"gpu{gpu.index}-{os.getpid()}-{uuid.uuid4().hex[:8]}.claim"
                file = open(path, "w")
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new file: nobody else has it
                file.write(f"{request_gb:g}")
                file.flush()
                others = claimed.get(gpu.index, 0.0)
                say(f"GPU {gpu.index} of {len(table)} on {socket.gethostname()}: {gpu.free_gb:.1f} of "
                    f"{gpu.total_gb:.1f} GB free, {others:g} GB claimed by other jobs, {request_gb:g} GB claimed "
                    f"by this one (claims: {', '.join(f'GPU {g.index} {claimed.get(g.index, 0.0):g}' for g in table)})")
                return Claim(gpu.index, request_gb, file)
        if not waited:
            say(f"waiting for GPU memory: {request_gb:g} GB fits on none of the {len(table)} GPUs beside the "
                f"other jobs' claims ({', '.join(f'GPU {g.index} {claimed.get(g.index, 0.0):g}' for g in table)} GB)")
            waited = True
        time.sleep(wait_seconds)


def placement_skipped(device: str, environ: dict | os._Environ = os.environ) -> str | None:
    """Why this process places itself on no GPU (a reason), or None when it should place itself."""
    if device == "cpu":
        return "train.device is cpu"
    if "CUDA_VISIBLE_DEVICES" in environ:
        return f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']} is set (by the user or Slurm)"
    if int(environ.get("WORLD_SIZE", "1")) > 1:
        return "started by torchrun: LOCAL_RANK picks the GPU"
    return None


def place(stage: str, device: str, gpus: Callable[[], list[Gpu]] = query_gpus, lock_dir: Path = LOCK_DIR,
          environ: dict | os._Environ = os.environ) -> Claim | None:
    """Place a train/evaluate process on one GPU of a node with several (module docstring).

    Returns the claim to hold while the job runs, or None where nothing changes. Sets
    CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER) in ``environ`` when it claims a GPU.
    """

    def say(text: str) -> None:
        print(f"mbmt {stage}: {text}", file=sys.stderr, flush=True)

    reason = placement_skipped(device, environ)
    if reason:
        if device != "cpu":
            say(f"no GPU placement: {reason}")
        return None
    table = gpus()
    if len(table) <= 1:
        if table:
            say("no GPU placement: one GPU on this node, every job uses it")
        return None
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        say("no GPU placement: CUDA is already initialised in this process")
        return None
    try:
        request = float(environ.get(REQUEST_ENV) or DEFAULT_REQUEST_GB[stage])
    except ValueError:
        raise MbmtError(f"{REQUEST_ENV}={environ[REQUEST_ENV]!r} is not a number of GB (the job's gpu_mem_gb "
                        f"request, e.g. {REQUEST_ENV}=12)") from None
    claim = claim_gpu(request, gpus, lock_dir, say=say)
    environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    environ["CUDA_VISIBLE_DEVICES"] = str(claim.index)
    return claim


def main() -> int:
    """`python -m mbmt.gpus`: the node's GPUs, the claims held now and where a training would go."""
    table = query_gpus()
    if not table:
        print("no GPU listed by nvidia-smi: jobs run where train.device says, no placement")
        return 0
    directory = LOCK_DIR / socket.gethostname()
    claimed: dict[int, float] = {}
    if directory.is_dir():  # jobs have claimed GPUs here (some may still run)
        with open(directory.parent / f"{directory.name}.lock", "a") as node_lock:
            fcntl.flock(node_lock, fcntl.LOCK_EX)
            claimed = held_claims(directory)
    for gpu in table:
        print(f"GPU {gpu.index}: {gpu.free_gb:.1f} of {gpu.total_gb:.1f} GB free, {claimed.get(gpu.index, 0.0):g} GB claimed")
    if len(table) == 1:
        print("one GPU: no placement, every job uses it (as before)")
        return 0
    skipped = placement_skipped("auto")
    chosen = choose_gpu([g.free_gb for g in table], [g.total_gb for g in table],
                        [claimed.get(g.index, 0.0) for g in table], DEFAULT_REQUEST_GB["train"])
    print(f"no placement: {skipped}" if skipped else
          f"a training started now would run on GPU {table[chosen].index}" if chosen is not None else
          "a training started now would wait for GPU memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())

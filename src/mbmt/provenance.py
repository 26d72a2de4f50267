"""Where a number came from: code revision, configuration, hardware, software versions and the lock."""

from __future__ import annotations

import datetime
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def git_revision(root: str | Path = ".") -> str:
    """The commit checked out in ``root``, with "-dirty" if tracked files differ; "unknown" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        revision = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str = "cpu") -> str:
    """A one-line description of the machine, e.g. "NVIDIA H100 80GB HBM3 (1 GPU); AMD EPYC ... (16 cores)"."""
    import os

    import torch

    cpu = f"{cpu_name()} ({os.cpu_count()} cores)"
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} ({torch.cuda.device_count()} GPU); {cpu}"
    return f"CPU only; {cpu}"


# The params a provenance record names a run by: labels of what ran, not inputs to what it computes,
# so no stage declares them (mbmt.stage_specs.STAGE_PARAMS) and a new label re-runs nothing.
PROVENANCE_PARAMS = ("profile", "data.source")


@dataclass(frozen=True)
class ProvenanceLabels:
    """params ``profile`` and ``data.source``, as a stage hands them to the library."""

    profile: str
    dataset: str


def collect_for(labels: ProvenanceLabels, device: str = "cpu") -> dict:
    """Provenance of a run labelled ``labels`` on ``device`` (collect, from the labels a stage unpacked)."""
    return collect(profile=labels.profile, dataset=labels.dataset, device=device)


def collect(*, profile: str, dataset: str, device: str = "cpu") -> dict:
    """Provenance recorded with every trained model and metrics file: ``profile`` (params profile),
    ``dataset`` (params data.source) and the hardware of ``device`` beside the code and versions."""
    import timm
    import torch

    from mbmt.environment import record

    return {
        "profile": profile,
        "dataset": dataset,
        "git_revision": git_revision(),
        "hardware": hardware(device),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        # The lock's digest, whether the installed environment matched it, and the drift if not.
        "environment": record(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

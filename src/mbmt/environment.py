"""The software environment as part of a result: the lock, its result-affecting part, and drift.

``requirements/<set>.txt`` (base, dev, s3, ssh, slurm) lock every distribution of each install set,
with hashes, from one resolution (``bash requirements/lock.sh``; docs/environment.md). This module
reads them without pip:

- `stage_packages`: the locked versions of the packages that can change what a stage computes
  (RESULT_PACKAGES). Both front ends make them a dependency of the stage, as its code is: the
  Snakefile as a params value (workflow/rules/common.smk), dvc.yaml as a params key of
  ``requirements/stages.yaml``, which `mbmt dag` writes from the lock (STAGES_FILE). A lock change
  that moves only, say, a DVC plugin re-runs nothing.
- `drift`: the installed distributions (importlib.metadata) against the lock. `check` stops a
  run before its first job when a locked package is missing or at another version, unless
  ``MBMT_ENV_DRIFT=allow`` (OVERRIDE_VARIABLE) says to go on; `record` is what the training record,
  the metrics files and the report keep: the lock's digest, whether the environment matched it,
  and the drift.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mbmt.errors import MbmtError

# Where a checkout keeps the locks (relative to the project root) and the lock every install has.
LOCK_DIR = Path("requirements")
BASE_LOCK = LOCK_DIR / "base.txt"
LOCK_SETS = ("base", "dev", "s3", "ssh", "slurm")
# The result-affecting part of the lock, per stage, as dvc.yaml's params file (written by `mbmt dag`).
STAGES_FILE = LOCK_DIR / "stages.yaml"
STAGES_KEY = "environment"
# The lock beside the code that runs: in an editable install (the README's), the checkout's.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "bash requirements/lock.sh"
REINSTALL = "pip install --require-hashes --no-deps -r requirements/dev.txt (or the lock of your install set)"
OVERRIDE_VARIABLE = "MBMT_ENV_DRIFT"
OVERRIDE_VALUE = "allow"

# The packages whose versions can change a stage's numbers (or its output files' bytes), by stage.
# Numerical code: numpy, h5py (the split files' bytes); torch, torchvision, timm and safetensors (the
# models, their kernels and weight files); on GPUs torch's CUDA libraries (NVIDIA_PREFIX: cuBLAS,
# cuDNN, NCCL, ... decide GPU numerics) and triton (torch.compile's kernels); torchjd and the solvers
# its UPGrad/DualProj (quadprog, qpsolvers), CAGrad and Nash-MTL (cvxpy, ecos, scipy and cvxpy's
# default solvers clarabel, osqp, scs) solve with: their solutions are the updates. pillow resizes
# real frames; matplotlib (and the font and layout libraries it draws with) renders the synthetic
# scenes and the report's figures. Everything else (the front ends, their plugins, the Hub client,
# progress bars, YAML, the test tools) decides how a stage runs, not what it computes.
NUMERICS = ("numpy", "h5py")
TORCH = ("torch", "torchvision", "timm", "safetensors", "triton")
NVIDIA_PREFIX = "nvidia-"
NOT_NUMERICS = ("nvidia-ml-py",)  # NVML: reads the GPUs' state, computes nothing
SOLVERS = ("torchjd", "quadprog", "qpsolvers", "cvxpy", "ecos", "scipy", "clarabel", "osqp", "scs")
DRAWING = ("matplotlib", "contourpy", "kiwisolver", "fonttools", "pillow")
RESULT_PACKAGES: dict[str, tuple[str, ...]] = {
    "fetch": NUMERICS + DRAWING,
    "weights": TORCH,
    "preprocess": NUMERICS + ("pillow",),
    "train": NUMERICS + TORCH + SOLVERS,
    "evaluate": NUMERICS + TORCH,
    "report": NUMERICS + TORCH + DRAWING,
}
# Stages that run torch's kernels, so on a GPU its CUDA libraries.
CUDA_STAGES = ("weights", "train", "evaluate", "report")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (Pillow, pillow; ruamel.yaml, ruamel-yaml)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str  # normalized
    version: str
    marker: str  # "" when the pin applies everywhere

    def applies(self) -> bool:
        """Whether this pin is for the running interpreter and platform (its environment marker)."""
        if not self.marker:
            return True
        from packaging.markers import Marker

        return Marker(self.marker).evaluate()

    def spec(self) -> str:
        return self.version + (f" ; {self.marker}" if self.marker else "")


def parse_lock(text: str) -> list[Pin]:
    """The pins of a lock written by `uv pip compile --generate-hashes` (name==version [; marker])."""
    pins = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement = line.split(" --hash", 1)[0].strip()
        name, _, rest = requirement.partition("==")
        if not rest:
            raise ValueError(f"not a pinned requirement: {requirement!r}")
        version, _, marker = rest.partition(";")
        pins.append(Pin(normalize(name.split("[", 1)[0].strip()), version.strip(), marker.strip()))
    return pins


@functools.lru_cache(maxsize=16)
def _read(path: str, mtime_ns: int) -> tuple[Pin, ...]:
    return tuple(parse_lock(Path(path).read_text()))


def read_lock(path: str | Path) -> list[Pin]:
    path = Path(path)
    if not path.is_file():
        # A copy of the workflow without requirements/ (the lock decides every stage's identity).
        raise MbmtError(f"{path.resolve()} is missing: the workflow reads its stages' locked package versions "
                        f"from {LOCK_DIR}/; run from the project root, or copy {LOCK_DIR}/ along with the "
                        "Snakefile, workflow/ and params.yaml")
    return list(_read(str(path.resolve()), path.stat().st_mtime_ns))


def result_names(stage: str, pins: list[Pin]) -> list[str]:
    """The locked packages that can change what ``stage`` computes."""
    names = set(RESULT_PACKAGES[stage])
    if stage in CUDA_STAGES:
        names |= {p.name for p in pins if p.name.startswith(NVIDIA_PREFIX) and p.name not in NOT_NUMERICS}
    return sorted(names & {p.name for p in pins})


def stage_packages(stage: str, lock: str | Path = BASE_LOCK) -> dict[str, str]:
    """{package: locked version} of the packages that can change ``stage``'s results; a package
    locked at several versions (by Python version or platform) has each with its marker, joined by " | "."""
    pins = read_lock(lock)
    return {name: " | ".join(p.spec() for p in pins if p.name == name) for name in result_names(stage, pins)}


def render_stages_file(lock: str | Path = BASE_LOCK) -> str:
    """requirements/stages.yaml: every stage's result-affecting locked versions (dvc.yaml's params)."""
    import yaml

    body = yaml.safe_dump({STAGES_KEY: {stage: stage_packages(stage, lock) for stage in RESULT_PACKAGES}},
                          sort_keys=False, width=200)
    return ("# Generated by `mbmt dag` from requirements/base.txt; do not edit. Each stage's packages whose\n"
            "# versions can change what it computes (mbmt.environment.RESULT_PACKAGES): dvc.yaml's stages\n"
            "# depend on their entry, as the Snakefile's do on the same values. docs/environment.md.\n" + body)


# --- Drift: the installed environment against the lock -------------------------------------------

def lock_file(name: str = "base") -> Path:
    """The lock of install set ``name`` beside the running code (else in the working directory)."""
    beside = PACKAGE_ROOT / LOCK_DIR / f"{name}.txt"
    return beside if beside.is_file() else LOCK_DIR / f"{name}.txt"


def lock_digest(path: Path | None = None) -> str | None:
    """sha256 of the base lock (the file's bytes); None without one."""
    path = path or lock_file()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def installed() -> dict[str, str]:
    """{normalized name: version} of every installed distribution, the first on sys.path winning as
    for importlib.metadata. Read from the metadata folders' names (``name-version.dist-info``, as
    installers write them: the whole check took under 0.1 s for this project's ~240 distributions on a
    2-core VM, where parsing each METADATA file took 0.5 s), and from the metadata itself only for a
    folder named otherwise."""
    import sys
    from importlib.metadata import PathDistribution

    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            stem, dot, suffix = folder.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            name, dash, version = stem.partition("-")
            if not dash or "-" in version:
                dist = PathDistribution(Path(entry or ".", folder))
                name, version = dist.metadata["Name"] or "", dist.version
            if name:
                found.setdefault(normalize(name), version)
    return found


@dataclass(frozen=True)
class Drift:
    name: str
    installed: str | None  # None: missing
    locked: str

    def describe(self) -> str:
        return f"{self.name} {self.installed or 'missing'} (locked {self.locked})"


def drift(lock_dir: Path | None = None, present: Mapping[str, str] | None = None) -> list[Drift]:
    """Each locked package that is missing (a base package) or installed at another version than
    its lock says (any install set's: the locks come from one resolution, so they agree). Packages
    installed beside the locked ones (IPython, a debugger) are no drift."""
    lock_dir = lock_dir or lock_file().parent
    present = installed() if present is None else present
    found: dict[str, Drift] = {}
    for name in LOCK_SETS:
        path = lock_dir / f"{name}.txt"
        if not path.is_file():
            continue
        for pin in read_lock(path):
            if pin.name in found or not pin.applies():
                continue
            version = present.get(pin.name)
            if version is None and name != "base":
                continue  # an extra's package that this install does not have
            if version != pin.version:
                found[pin.name] = Drift(pin.name, version, pin.version)
    return sorted(found.values(), key=lambda d: d.name)


def overridden(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(OVERRIDE_VARIABLE) == OVERRIDE_VALUE


def drift_message(found: list[Drift], lock: Path) -> str:
    return (f"the installed environment differs from the lock {lock}: "
            + "; ".join(d.describe() for d in found)
            + f". Results computed now would not be the lock's. Reinstall from the lock: {REINSTALL}; "
            f"to go on deliberately with this environment (recorded in every result), set "
            f"{OVERRIDE_VARIABLE}={OVERRIDE_VALUE}")


def check(environ: Mapping[str, str] | None = None) -> None:
    """Stop (MbmtError) before a stage or a workflow's first job when the environment drifted from
    the lock and no override is set. Without a lock (not a checkout) there is nothing to compare."""
    from mbmt.errors import MbmtError

    lock = lock_file()
    if not lock.is_file() or overridden(environ):
        return
    found = drift(lock.parent)
    if found:
        raise MbmtError(drift_message(found, lock))


def record() -> dict:
    """The environment in a result's provenance: the lock, its digest, whether the installed
    environment matched it, the drift and whether a user overrode it."""
    lock = lock_file()
    if not lock.is_file():
        return {"lock": None, "lock_sha256": None, "matches_lock": None, "drift": [], "override": overridden()}
    found = drift(lock.parent)
    return {"lock": LOCK_DIR.joinpath(lock.name).as_posix(), "lock_sha256": lock_digest(lock),
            "matches_lock": not found, "drift": [d.describe() for d in found], "override": overridden()}


def identity(stage: str) -> dict:
    """What a run's identity holds of the environment (mbmt.training.checkpoint): a digest of the
    lock's versions of the packages that can change ``stage``'s result, and those of them installed
    at other versions (under the override), so that a finished run is not republished under other
    numerics. Packages that cannot change the result leave it alone."""
    import json

    lock = lock_file()
    if not lock.is_file():
        return {"locked": None, "drift": []}
    packages = stage_packages(stage, lock)
    return {"locked": hashlib.sha256(json.dumps(packages, sort_keys=True).encode()).hexdigest(),
            "drift": [d.describe() for d in drift(lock.parent) if d.name in packages]}


def describe(records: list[Mapping]) -> str:
    """One line for the report's header from the environment records of every result."""
    if not records or any(r is None for r in records):
        return "not recorded for some results"
    digests = sorted({r.get("lock_sha256") or "none" for r in records})
    lock = ", ".join(sorted({str(r.get("lock")) for r in records}))
    drifted = sorted({item for r in records for item in r.get("drift") or []})
    status = ("matched the lock" if all(r.get("matches_lock") for r in records)
              else f"drifted from the lock (override {OVERRIDE_VARIABLE}={OVERRIDE_VALUE}): " + "; ".join(drifted))
    return f"lock {lock} sha256 {', '.join(d[:12] for d in digests)}; {status}"

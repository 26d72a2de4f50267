"""The install from the lock against the install through pip's resolver, side by side in one run.

Each install goes into a fresh virtual environment of this Python, with every distribution's file
already at hand (downloaded once beforehand, hash-checked, into a temporary folder passed to both as
--find-links; that download is not timed). Both reach the package index as pip is configured here:

- resolver: `pip install -e '.[dev]'` (the README's command before the lock): pip resolves the
  dependencies of pyproject.toml, ~240 distributions, against the index;
- lock: `pip install --require-hashes --no-deps -r requirements/dev.txt` then
  `pip install --no-deps -e .` (the README's command now): no resolution, every file hash-checked.

Prints one table: wall time of each, the ratio, and what each installed. Needs about 16 GB of free
disk (the files and two environments) and several minutes; everything is removed afterwards.

    python benchmarks/bench_install.py
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "dev.txt"


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def venv(folder: Path) -> Path:
    run([sys.executable, "-m", "venv", str(folder)])
    return folder / "bin" / "python"


def timed(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    for command in commands:
        run(command)
    return time.perf_counter() - start


def installed(python: Path) -> int:
    return len(run([str(python), "-m", "pip", "list", "--format=freeze"]).stdout.splitlines())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench_install_") as tmp:
        tmp = Path(tmp)
        files = tmp / "files"
        print(f"downloading every locked file to {files} (not timed) ...", file=sys.stderr)
        run([sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps", "-r", str(LOCK),
             "-d", str(files)])
        at_hand = ["--find-links", str(files)]
        rows = []
        for name, commands in [
            ("lock", lambda py: [[str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", *at_hand,
                                  "-r", str(LOCK)],
                                 [str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", "."]]),
            ("resolver", lambda py: [[str(py), "-m", "pip", "install", "-q", *at_hand, "-e", ".[dev]"]]),
        ]:
            print(f"{name}: installing into a fresh environment ...", file=sys.stderr)
            python = venv(tmp / name)
            seconds = timed(commands(python))
            check = subprocess.run([str(python), "-m", "pip", "check"], cwd=ROOT, capture_output=True, text=True)
            rows.append((name, seconds, installed(python), "clean" if check.returncode == 0 else "BROKEN"))
            shutil.rmtree(tmp / name)
    lock_seconds = rows[0][1]
    print(f"\nInstall of .[dev] into a fresh venv, files at hand; Python {platform.python_version()}, "
          f"{platform.machine()}, {__import__('os').cpu_count()} cores\n")
    print("| install | wall time (s) | vs lock | distributions | pip check |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, seconds, count, check in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / lock_seconds:.2f}x | {count} | {check} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

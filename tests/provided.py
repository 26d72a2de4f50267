"""What a test does when a tool or service that CI provides is missing (no tests here).

.ci/run installs and starts what some tests need beyond the Python packages: a Slurm cluster,
an SSH server, Chromium, and (through the dev extra) the S3 stand-in moto, dvc-ssh, dvc-s3 and
Snakemake's Slurm plugin. On a developer's machine a test that needs one of them is skipped with
the reason. In CI (CI=true in the environment; .ci/run sets it) the test fails instead, naming
what is missing: a failed install must not leave CI green without what it tests. Skips for
hardware (a CUDA device) are not this: they stay skips everywhere.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(tool: str, reason: str) -> NoReturn:
    """``tool`` is not available (``reason``: why, and how to get it): skip, or fail under CI."""
    if in_ci():
        pytest.fail(f"{tool} is missing: {reason} (CI=true: .ci/run provides it, so a test that needs "
                    "it fails instead of being skipped)", pytrace=False)
    pytest.skip(f"{tool} is missing: {reason}")


def require_module(module: str, tool: str, reason: str) -> None:
    """``missing(tool, reason)`` unless the Python module ``module`` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        missing(tool, reason)

"""Shared fixtures. Tests run on CPU, offline, at tiny sizes."""

from __future__ import annotations

import os

# Before timm/huggingface_hub are imported anywhere: a stray hub download would retry for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_PRESET = REPO / "tests" / "tiny.yaml"
# The 10 real NYUv2 test frames shipped beside the project (../shared), or MBMT_REAL_IMAGES.
REAL_IMAGES = Path(os.environ.get("MBMT_REAL_IMAGES", REPO.parent / "shared" / "data" / "nyuv2-test10"))


@pytest.fixture
def tiny_params() -> dict:
    """params.yaml with the tiny test preset merged over it, validated."""
    from mbmt.config import load_params

    return load_params([REPO / "params.yaml", TINY_PRESET])


@pytest.fixture
def real_images() -> Path:
    if not (REAL_IMAGES / "0_rgb.png").is_file():
        pytest.skip(f"the real NYUv2 test frames are not at {REAL_IMAGES} (set MBMT_REAL_IMAGES)")
    return REAL_IMAGES


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project directory (cwd) holding params.yaml and the tiny preset merged into it."""
    import yaml

    from mbmt.config import load_params

    params = load_params([REPO / "params.yaml", TINY_PRESET])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(TINY_PRESET, tmp_path / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path

"""A rehearsal of the first real run: the main job as a user first meets it, short of the GPU.

A copy of the project whose params differ from params.yaml only in sizes and epochs (the tiny
preset) and in where the sources are: `data.source: nyuv2` and `pretrained: true`, the NYUv2
archive (MTAN's layout, rendered by the synthetic generator) served by a local HTTP server that
cuts the first transfer, and timm-format ImageNet weights of the backbone (random, from timm)
served by a local stand-in for the Hugging Face Hub through HF_ENDPOINT, with an empty Hub cache.
One `snakemake` runs fetch (resuming), weights, preprocess, every training, every evaluation and
the report; `dvc push` to a local remote; a second clone `mbmt pull`s, offline, and gets every
output byte for byte, the weight files included; neither front end then has anything to run.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
import yaml
from hub_server import HubServer, timm_weights
from test_fetch import ArchiveServer
from test_workflow_project import (SNAKEMAKE_FAST, TINY, commit, contents, copy_project, dvc_changed, init_git_dvc,
                                   outputs, planned, run)

pytestmark = pytest.mark.slow

BACKBONE = "test_efficientnet"  # tiny.yaml's backbone; timm's default tag is r160_in1k
REPO_ID = "timm/test_efficientnet.r160_in1k"


def mtan_archive(tmp_path: Path, params: dict) -> bytes:
    """MTAN's nyuv2.zip layout (nyuv2/{train,val}/{image,label,depth,normal}/<i>.npy) of the synthetic scenes."""
    from mbmt.data.fetch import render_synthetic

    root = tmp_path / "render"
    root.mkdir()
    render_synthetic(params["data"], root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(root.rglob("*.npy")):
            archive.write(path, f"nyuv2/{path.relative_to(root).as_posix()}")
    return buffer.getvalue()


@pytest.fixture
def servers(tmp_path):
    """The archive server and the Hub stand-in, both on 127.0.0.1."""
    from mbmt.config import load_params

    tiny = load_params([Path(__file__).parents[1] / "params.yaml", TINY])
    archive = ArchiveServer()
    archive.payload = mtan_archive(tmp_path, tiny)
    archive.drops, archive.drop_after = 1, len(archive.payload) // 3  # the first transfer is cut
    thread = threading.Thread(target=archive.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    with HubServer(repos={REPO_ID: {"model.safetensors": timm_weights(BACKBONE, seed=3)}}) as hub:
        yield archive, hub
    archive.httpd.shutdown()
    archive.httpd.server_close()


def rehearsal_preset(path: Path, archive_url: str) -> Path:
    """The tiny sizes, NYUv2 from the local server, ImageNet weights for every model that has them."""
    tiny = yaml.safe_load(TINY.read_text())
    tiny["data"] = {**tiny["data"], "source": "nyuv2", "nyuv2": {"sources": [archive_url]}}
    for name, entry in tiny["models"].items():
        if name != "mtan":
            entry["pretrained"] = True
    path.write_text(yaml.safe_dump(tiny, sort_keys=False))
    return path


def test_the_first_real_run_from_a_fresh_copy_to_a_collaborators_clone(tmp_path, servers):
    archive, hub = servers
    root = copy_project(tmp_path / "project", preset=rehearsal_preset(tmp_path / "rehearsal.yaml", archive.url))
    init_git_dvc(root)
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home")}

    result = run(["snakemake", *SNAKEMAKE_FAST], root, env=online)
    assert "Recorded the outputs for DVC" in result.stderr, result.stderr[-3000:]
    # fetch resumed the cut download with a Range request, and took the archive whole.
    assert [r["range"] is not None for r in archive.requests] == [False, True]
    source = json.loads((root / "data" / "raw" / "SOURCE.json").read_text())
    assert source["url"] == archive.url and source["sha256"] == hashlib.sha256(archive.payload).hexdigest()
    # The weights stage got the backbone's file from the Hub once, and every training started from it.
    served = hub.repos[REPO_ID]["model.safetensors"]
    assert (root / "data" / "weights" / f"{BACKBONE}.safetensors").read_bytes() == served
    assert len([p for m, p in hub.requests if m == "GET" and "/resolve/" in p]) == 1
    import torch

    weights_sha = hashlib.sha256(served).hexdigest()
    for name in ("st_ss", "mtnet", "mbmt_full_scratch", "mbmt_full_pretrained"):
        record = torch.load(root / "models" / name / "seed0" / "model.pt", weights_only=True)
        assert record["extra"]["run"]["settings"]["imagenet_weights"] == {BACKBONE: weights_sha}, name
    assert (root / "reports" / "README.md").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {out["path"] for out in lock[f"weights@{BACKBONE}"]["outs"]} == {
        f"data/weights/{BACKBONE}.safetensors", f"data/weights/{BACKBONE}.json"}

    commit(root, "results")
    run(["dvc", "remote", "add", "--default", "shared", str(tmp_path / "remote")], root)
    commit(root, "remote")
    run(["dvc", "push", "--quiet"], root)
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(root), str(clone)], tmp_path)
    run(["mbmt", "pull"], clone)  # HF_HUB_OFFLINE=1 (the tests' default), a fresh Hub cache: nothing downloads
    for out in outputs(root):
        assert contents(clone, out) == contents(root, out), out
    assert dvc_changed(clone) == set()
    assert planned(clone) == set()

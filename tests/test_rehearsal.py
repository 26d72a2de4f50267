"""A rehearsal of the first real run: the main job as a user first meets it, short of the GPU.

A copy of the project whose params differ from params.yaml only in sizes and epochs (the tiny
preset) and in where the sources are: `data.source: nyuv2` and `pretrained: true`; MTAN's links
dead (a local HTTP server answers 404 and a web page), then the NYUv2 mirror on the Hub (the
synthetic generator's scenes as Parquet files in the mirror's schema, one transfer cut) and
timm-format ImageNet weights of the backbone (random, from timm), both served by a local stand-in
for the Hugging Face Hub through HF_ENDPOINT, with an empty Hub cache. One `snakemake` runs fetch
(falling through to the mirror, resuming, converting), weights, preprocess, every training, every
evaluation and the report; `dvc push` to a local remote; a second clone `mbmt pull`s, offline, and gets every
output byte for byte, the weight files included; neither front end then has anything to run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
import yaml
from hub_server import HubServer, mirror_parquet, timm_weights
from test_fetch import ArchiveServer
from test_workflow_project import (SNAKEMAKE_FAST, TINY, commit, contents, copy_project, dvc_changed, init_git_dvc,
                                   outputs, planned, run)

pytestmark = pytest.mark.slow

BACKBONE = "test_efficientnet"  # tiny.yaml's backbone; timm's default tag is r160_in1k
REPO_ID = "timm/test_efficientnet.r160_in1k"


MIRROR = "tanganke/nyuv2"
REVISION = "b367b8b53c4dcefbcb4d9310b74976a63cc7f306"
TRAIN_FILE, VAL_FILE = "data/train-00000-of-00001.parquet", "data/val-00000-of-00001.parquet"


def mirror_files(tmp_path: Path, params: dict) -> dict[str, bytes]:
    """The synthetic scenes as the mirror's Parquet files (one per split)."""
    from mbmt.data import mtan_layout
    from mbmt.data.fetch import render_synthetic
    from mbmt.data.settings import DataSettings

    data = DataSettings.from_section(params["data"])
    root = tmp_path / "render"
    root.mkdir()
    render_synthetic(data.synthetic, data.height, data.width, root)
    files = {}
    for split, name in (("train", TRAIN_FILE), ("test", VAL_FILE)):
        folder = mtan_layout.split_dir(root, split)
        files[name] = mirror_parquet([mtan_layout.read_sample(folder, i) for i in range(mtan_layout.sample_count(folder))])
    return files


@pytest.fixture
def servers(tmp_path):
    """The server of MTAN's dead links and the Hub stand-in, both on 127.0.0.1."""
    from mbmt.config import load_params

    tiny = load_params([Path(__file__).parents[1] / "params.yaml", TINY])
    links = ArchiveServer()
    links.files["/page"] = b"<!DOCTYPE html><html>gone</html>"
    links.types["/page"] = "text/html"
    thread = threading.Thread(target=links.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    repos = {REPO_ID: {"model.safetensors": timm_weights(BACKBONE, seed=3)}, MIRROR: mirror_files(tmp_path, tiny)}
    with HubServer(repos=repos, commit=REVISION, cut={TRAIN_FILE: [5000]}) as hub:  # the first transfer is cut
        yield links, hub
    links.httpd.shutdown()
    links.httpd.server_close()


def rehearsal_preset(path: Path, dead_links: list[str]) -> Path:
    """The tiny sizes, MTAN's links dead then the mirror on the Hub, ImageNet weights for every model that has them."""
    tiny = yaml.safe_load(TINY.read_text())
    mirror = {"hub": MIRROR, "revision": REVISION, "shards": {"train": 1, "val": 1},
              "shape": [tiny["data"]["height"], tiny["data"]["width"]]}
    tiny["data"] = {**tiny["data"], "source": "nyuv2", "nyuv2": {"sources": [*dead_links, mirror]}}
    for name, entry in tiny["models"].items():
        if name != "mtan":
            entry["pretrained"] = True
    path.write_text(yaml.safe_dump(tiny, sort_keys=False))
    return path


def test_the_first_real_run_from_a_fresh_copy_to_a_collaborators_clone(tmp_path, servers):
    links, hub = servers
    dead_links = [links.url_of("/gone.zip"), links.url_of("/page")]
    root = copy_project(tmp_path / "project", preset=rehearsal_preset(tmp_path / "rehearsal.yaml", dead_links))
    init_git_dvc(root)
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home")}

    result = run(["snakemake", *SNAKEMAKE_FAST], root, env=online)
    assert "Recorded the outputs for DVC" in result.stderr, result.stderr[-3000:]
    # fetch passed over the dead links, got the mirror's cut file again (the client resumes from the
    # last of its 10 MB chunks written: none here; tests/test_hub_mirror.py resumes with Range) and
    # converted the files.
    assert len(links.requests) == 2
    assert len([p for m, p in hub.requests if m == "GET" and p.endswith(TRAIN_FILE)]) == 2
    source = json.loads((root / "data" / "raw" / "SOURCE.json").read_text())
    assert (source["origin"], source["hub"]["repo_id"], source["hub"]["revision"]) == ("hub mirror", MIRROR, REVISION)
    assert [entry["source"] for entry in source["failed_sources"]] == dead_links
    assert source["hub"]["files_sha256"][TRAIN_FILE] == hashlib.sha256(hub.repos[MIRROR][TRAIN_FILE]).hexdigest()
    assert f"Hugging Face Hub dataset {MIRROR} at revision {REVISION}" in (root / "reports" / "README.md").read_text()
    # The weights stage got the backbone's file from the Hub once, and every training started from it.
    served = hub.repos[REPO_ID]["model.safetensors"]
    assert (root / "data" / "weights" / f"{BACKBONE}.safetensors").read_bytes() == served
    assert len([p for m, p in hub.requests if m == "GET" and f"/{REPO_ID}/resolve/" in p]) == 1
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

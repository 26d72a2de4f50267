"""NYUv2 from the mirror on the Hugging Face Hub (mbmt.data.hub_mirror): a local stand-in of the Hub
serves small Parquet files built here in the mirror's schema, after MTAN's links have died. Fetch
falls through to it, resumes a cut transfer, converts every row into MTAN's layout, checks every
array, and works offline from the Hub's cache; a bad row stops it with one error and nothing written."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pyarrow as pa
import pytest
from hub_server import HubServer, mirror_parquet, nested
from test_fetch import ArchiveServer, assert_failed, assert_raw_matches, raw_files, use_sources

from mbmt.cli import main

REPO = "tanganke/nyuv2"
REVISION = "b367b8b53c4dcefbcb4d9310b74976a63cc7f306"
HEIGHT, WIDTH = 8, 12  # the real mirror's are 288 x 384: params' shape says which
TRAIN_FILES = ("data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet")
VAL_FILE = "data/val-00000-of-00001.parquet"


def mirror_source(**changes) -> dict:
    return {"hub": REPO, "revision": REVISION, "shards": {"train": 2, "val": 1}, "shape": [HEIGHT, WIDTH], **changes}


@pytest.fixture
def samples(tmp_path, make_mtan_root) -> dict:
    """Three train samples (two in the first file, one in the second) and two val samples, every
    class and the ignore label among the labels, some depth and normals missing."""
    return make_mtan_root(tmp_path / "samples", {"train": 3, "test": 2}, height=HEIGHT, width=WIDTH, seed=4)


def mirror_files(samples: dict, **first_file_columns) -> dict[str, bytes]:
    train, test = samples["train"], samples["test"]
    return {TRAIN_FILES[0]: mirror_parquet(train[:2], **first_file_columns), TRAIN_FILES[1]: mirror_parquet(train[2:]),
            VAL_FILE: mirror_parquet(test), "README.md": b"the card"}


@pytest.fixture
def dead_links():
    """MTAN's links as they fail: a 404, and a web page instead of an archive."""
    server = ArchiveServer()
    server.files["/page"] = b"<!DOCTYPE html><html>gone</html>"
    server.types["/page"] = "text/html"
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield [server.url_of("/gone.zip"), server.url_of("/page")]
    server.httpd.shutdown()
    server.httpd.server_close()


def test_dead_links_fall_through_to_the_mirror_converted_and_recorded(project, hub_env, dead_links, samples,
                                                                      monkeypatch):
    from huggingface_hub import constants

    # One transfer is cut after 300 bytes: the client keeps what it wrote (256-byte chunks here, as a
    # real file of hundreds of MB has many of the client's 10 MB chunks) and resumes from there.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    with HubServer(repos={REPO: mirror_files(samples)}, commit=REVISION, cut={TRAIN_FILES[1]: [300]}) as hub:
        hub_env(hub.url)
        use_sources(project, *dead_links, mirror_source())
        assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)  # every value, the -1 labels included, in MTAN's layout and order
    assert [(path.rsplit("/", 1)[1], bytes_) for path, bytes_ in hub.ranges] == [
        ("train-00001-of-00002.parquet", "bytes=256-")]
    record = json.loads((project / "data/raw/SOURCE.json").read_text())
    assert (record["source"], record["origin"]) == ("nyuv2", "hub mirror")
    assert record["hub"]["repo_id"] == REPO and record["hub"]["revision"] == REVISION
    assert record["hub"]["files_sha256"] == {name: hashlib.sha256(data).hexdigest()
                                             for name, data in hub.repos[REPO].items() if name.endswith(".parquet")}
    assert record["converted_sha256"] == {path: hashlib.sha256(data).hexdigest()
                                          for path, data in raw_files(project).items()}
    assert record["counts"] == {"train": 3, "val": 2}
    assert [entry["source"] for entry in record["failed_sources"]] == dead_links
    assert "HTTP 404" in record["failed_sources"][0]["reason"] and "web page" in record["failed_sources"][1]["reason"]
    raw = project / "data" / "raw" / "train" / "label" / "0.npy"
    assert np.load(raw).dtype == np.float32 and np.load(raw).min() >= -1  # MTAN's float labels, -1 kept

    # Offline with the cache filled: the same bytes, no request.
    (project / "data" / "raw").rename(project / "first")
    hub_env("http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    use_sources(project, mirror_source())
    assert main(["fetch"]) == 0
    assert raw_files(project) == {p.relative_to(project / "first").as_posix(): p.read_bytes()
                                  for p in sorted((project / "first").rglob("*.npy"))}


def test_offline_without_the_cache_lists_every_source_and_why(project, hub_env, dead_links, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    use_sources(project, *dead_links, mirror_source())
    assert main(["fetch"]) == 2
    message = assert_failed(project, capsys, "none of the 3 sources", f"1. {dead_links[0]}: HTTP 404",
                            f"2. {dead_links[1]}: a web page",
                            f"3. the Hugging Face Hub dataset {REPO} at revision {REVISION}: ",
                            f"offline (HF_HUB_OFFLINE is set) and {TRAIN_FILES[0]} is not in the Hub cache")
    assert "Traceback" not in message


def labels_with(samples: dict, value: int) -> dict:
    semantic = np.stack([s["semantic"] for s in samples["train"][:2]]).astype(np.int64)
    semantic[1, 3, 5] = value
    return {"segmentation": nested(semantic)}


@pytest.mark.parametrize(("break_", "fragments"), [
    ("label", ["row 1 (MTAN's train/{image,label,depth,normal}/1.npy), column segmentation: labels [13] outside -1..12"]),
    ("nan", ["row 0 (MTAN's train/{image,label,depth,normal}/0.npy), column depth: holds NaN or infinite values"]),
    ("null", ["row 1 (MTAN's train/{image,label,depth,normal}/1.npy), column image: holds a null"]),
    ("shape", ["row 0 (MTAN's train/{image,label,depth,normal}/0.npy), column normal: axis 2 has length 11, "
               "expected shape [3, 8, 12]"]),
    ("normal", ["row 1 (MTAN's train/{image,label,depth,normal}/1.npy), column normal: ", "expected unit vectors"]),
    ("type", ["column 'image' holds double, expected float32 [3, 8, 12]"]),
    ("binary", ["column 'depth' is binary, expected float32 [1, 8, 12] as nested lists"]),
])
def test_a_bad_row_or_column_stops_with_one_error_naming_it_and_nothing_written(
        project, hub_env, samples, capsys, break_, fragments):
    train = samples["train"][:2]
    image = np.stack([s["image"] for s in train]).transpose(0, 3, 1, 2).astype(np.float32)
    depth = np.stack([s["depth"] for s in train])[:, None].astype(np.float32)
    normal = np.stack([s["normal"] for s in train]).transpose(0, 3, 1, 2).astype(np.float32)
    if break_ == "label":
        columns = labels_with(samples, 13)
    elif break_ == "nan":
        depth[0, 0, 2, 2] = np.nan
        columns = {"depth": nested(depth)}
    elif break_ == "null":
        column = nested(image)
        columns = {"image": pa.array([column[0].as_py(), None], type=column.type)}
    elif break_ == "shape":
        columns = {"normal": nested(normal[:, :, :, :11])}
    elif break_ == "normal":
        normal[1] *= 2  # a pixel with ground truth has length 2
        columns = {"normal": nested(normal)}
    elif break_ == "type":
        columns = {"image": nested(image.astype(np.float64))}
    else:
        columns = {"depth": pa.array([d.tobytes() for d in depth])}
    with HubServer(repos={REPO: mirror_files(samples, **columns)}, commit=REVISION) as hub:
        hub_env(hub.url)
        use_sources(project, mirror_source())
        assert main(["fetch"]) == 2
    message = assert_failed(project, capsys, f"{REPO}@{REVISION[:7]}:{TRAIN_FILES[0]}: ", *fragments)
    assert "(nothing of it was kept)" in message


def test_the_expected_shape_is_a_parameter(project, hub_env, samples, capsys):
    """The real mirror's 288 x 384: a file of another size fails the check, named."""
    with HubServer(repos={REPO: mirror_files(samples)}, commit=REVISION) as hub:
        hub_env(hub.url)
        use_sources(project, mirror_source(shape=[288, 384]))
        assert main(["fetch"]) == 2
    assert_failed(project, capsys, "column image: axis 1 has length 8, expected shape [3, 288, 384]")


def test_a_file_that_is_not_parquet_is_named(project, hub_env, samples, capsys):
    files = mirror_files(samples)
    files[VAL_FILE] = b"PAR1 not really"
    with HubServer(repos={REPO: files}, commit=REVISION) as hub:
        hub_env(hub.url)
        use_sources(project, mirror_source())
        assert main(["fetch"]) == 2
    assert_failed(project, capsys, f"{REPO}@{REVISION[:7]}:{VAL_FILE}: not a readable Parquet file")


def test_the_default_source_names_the_mirrors_files(tiny_params):
    """params.yaml's last source: the files the mirror holds at the pinned revision (its file list:
    8 train and 6 val Parquet files under data/), 288 x 384 arrays."""
    from mbmt.data.hub_mirror import shard_files

    source = tiny_params["data"]["nyuv2"]["sources"][-1]
    assert (source["hub"], source["revision"], source["shape"]) == (REPO, REVISION, [288, 384])
    files = shard_files(source)
    assert files["train"][0] == "data/train-00000-of-00008.parquet" and len(files["train"]) == 8
    assert files["val"][-1] == "data/val-00005-of-00006.parquet" and len(files["val"]) == 6

"""`mbmt fetch`: download (against a real HTTP server on 127.0.0.1), resume, checksums, local copies."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from mbmt.cli import main
from mbmt.config import deep_merge
from mbmt.data import mtan_layout
from mbmt.data.fetch import DOWNLOAD_ATTEMPTS
from mbmt.data.hdf5 import read_attrs

ETAG = '"nyuv2-v1"'


class ArchiveServer:
    """Serves one file at /nyuv2.zip with Range support; can drop connections or ignore Range."""

    def __init__(self):
        self.payload = b""
        self.status = 200
        self.honour_range = True
        self.drops = 0  # how many of the next responses are cut ...
        self.drop_after = 0  # ... after this many body bytes
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
                if server.status != 200:
                    self.send_error(server.status)
                    return
                data, start = server.payload, 0
                requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if requested and server.honour_range and self.headers.get("If-Range") in (None, ETAG):
                    start = int(requested[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", ETAG)
                self.end_headers()
                body = data[start:]
                if server.drops:
                    server.drops -= 1
                    body = body[:server.drop_after]  # then the connection closes (HTTP/1.0)
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/nyuv2.zip"


@pytest.fixture
def server():
    s = ArchiveServer()
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def dataset(tmp_path, make_mtan_root):
    """A small MTAN root (outside the project) and its samples."""
    root = tmp_path / "mtan" / "nyuv2"
    return root, make_mtan_root(root, {"train": 2, "test": 1}, height=32, width=32)


def zip_bytes(root: Path) -> bytes:
    """MTAN's archive: nyuv2/{train,val}/..., plus macOS junk that must be ignored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*.npy")):
            zf.write(path, f"nyuv2/{path.relative_to(root).as_posix()}")
        zf.writestr("__MACOSX/nyuv2/train/image/._0.npy", b"junk")
    return buffer.getvalue()


def set_params(project: Path, **data) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params = deep_merge(params, {"data": {"source": "nyuv2", **data}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def assert_raw_matches(project: Path, samples: dict) -> None:
    for split, expected in samples.items():
        split_dir = mtan_layout.split_dir(project / "data" / "raw", split)
        assert mtan_layout.sample_count(split_dir) == len(expected)
        for index, sample in enumerate(expected):
            got = mtan_layout.read_sample(split_dir, index)
            for name, value in sample.items():
                np.testing.assert_array_equal(got[name], value)


def assert_failed(project: Path, capsys, *fragments: str) -> str:
    """The last command failed with a one-line error containing ``fragments``; nothing in data/raw."""
    err = capsys.readouterr().err
    message = next(line for line in err.splitlines() if line.startswith("mbmt fetch: error:"))
    for fragment in fragments:
        assert fragment in message
    assert not (project / "data" / "raw").exists()
    assert not list(project.glob("data/.raw*"))  # no temporary directory left over
    return message


def test_download_extracts_and_records_unpinned_hash(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    digest = hashlib.sha256(server.payload).hexdigest()
    set_params(project, nyuv2={"url": server.url, "sha256": None, "local_path": None})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    out = capsys.readouterr().out
    assert f"data.nyuv2.sha256: {digest}" in out  # how to pin it
    source = json.loads((project / "data/raw/SOURCE.json").read_text())
    assert source["sha256"] == digest and source["sha256_pinned"] is False
    assert (source["origin"], source["url"], source["archive_root"]) == ("download", server.url, "nyuv2/")
    assert source["archive_bytes"] == len(server.payload) and source["counts"] == {"train": 2, "val": 1}
    assert server.requests == [{"range": None, "if_range": None}]
    # The archive stays in data/downloads (a re-run of the stage does not download again).
    assert [p.name.split("-", 1)[1] for p in (project / "data/downloads").iterdir()] == ["nyuv2.zip"]
    assert main(["fetch"]) == 0 and len(server.requests) == 1


def test_interrupted_download_resumes_with_range(project, server, dataset):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.drops, server.drop_after = 1, 5000
    set_params(project, nyuv2={"url": server.url, "sha256": hashlib.sha256(server.payload).hexdigest(), "local_path": None})
    assert main(["fetch"]) == 0
    assert server.requests == [{"range": None, "if_range": None}, {"range": "bytes=5000-", "if_range": ETAG}]
    assert_raw_matches(project, samples)


def test_failed_download_is_resumed_by_the_next_run(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.drops, server.drop_after = DOWNLOAD_ATTEMPTS, 3000
    set_params(project, nyuv2={"url": server.url, "sha256": hashlib.sha256(server.payload).hexdigest(), "local_path": None})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "re-run `mbmt fetch` to resume", f"{3000 * DOWNLOAD_ATTEMPTS} bytes")
    [part] = (project / "data/downloads").glob("*.part")
    assert part.stat().st_size == 3000 * DOWNLOAD_ATTEMPTS
    assert main(["fetch"]) == 0  # a new process, as a retried pipeline stage
    assert server.requests[-1]["range"] == f"bytes={3000 * DOWNLOAD_ATTEMPTS}-"
    assert_raw_matches(project, samples)
    assert not list((project / "data/downloads").glob("*.part*"))


def test_server_ignoring_range_restarts_cleanly(project, server, dataset):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.honour_range, server.drops, server.drop_after = False, 1, 5000
    set_params(project, nyuv2={"url": server.url, "sha256": hashlib.sha256(server.payload).hexdigest(), "local_path": None})
    assert main(["fetch"]) == 0  # appending the 200 body to the partial file would fail the checksum
    assert server.requests[1]["range"] == "bytes=5000-"
    assert_raw_matches(project, samples)


def test_wrong_checksum_removes_the_download(project, server, dataset, capsys):
    root, _ = dataset
    server.payload = zip_bytes(root)
    actual = hashlib.sha256(server.payload).hexdigest()
    set_params(project, nyuv2={"url": server.url, "sha256": "0" * 64, "local_path": None})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "sha256 mismatch", "0" * 64, actual, "removed")
    assert not list((project / "data/downloads").iterdir())


def test_truncated_archive_is_an_error(project, server, dataset, capsys):
    root, _ = dataset
    server.payload = zip_bytes(root)[:-2000]  # what a server that cut the file short would deliver
    set_params(project, nyuv2={"url": server.url, "sha256": None, "local_path": None})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "truncated or corrupt archive", "removed")
    assert not list((project / "data/downloads").iterdir())


def test_http_error_names_the_url(project, server, capsys):
    server.status = 404
    set_params(project, nyuv2={"url": server.url, "sha256": None, "local_path": None})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, server.url, "HTTP 404", "local_path")
    assert len(server.requests) == 1  # a client error is not retried


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_local_archive(project, dataset, suffix):
    root, samples = dataset
    archive = root.parent / f"copy{suffix}"
    if suffix == ".zip":
        archive.write_bytes(zip_bytes(root))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(root, arcname="nyuv2")
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    source = json.loads((project / "data/raw/SOURCE.json").read_text())
    assert source["origin"] == "local archive"
    assert source["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert archive.exists() and not (project / "data/downloads").exists()


@pytest.mark.parametrize("level", ["root", "parent"])
def test_local_folder(project, dataset, level):
    root, samples = dataset
    set_params(project, nyuv2={"local_path": str(root if level == "root" else root.parent)})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    assert json.loads((project / "data/raw/SOURCE.json").read_text())["origin"] == "local folder"


def test_missing_local_path(project, capsys):
    set_params(project, nyuv2={"local_path": "nowhere/nyuv2.zip"})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "data.nyuv2.local_path", "nowhere/nyuv2.zip", "does not exist")


def test_archive_without_mtan_layout(project, tmp_path, capsys):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("nyuv2/train/0.png", b"not the layout")
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, str(archive), "does not contain MTAN's NYUv2")


@pytest.mark.parametrize("folder", ["label", "image"])
def test_folder_with_a_missing_sample_file(project, dataset, capsys, folder):
    root, _ = dataset
    (root / "train" / folder / "1.npy").unlink()
    (root / "train" / folder / "2.npy").write_bytes((root / "train" / folder / "0.npy").read_bytes())
    set_params(project, nyuv2={"local_path": str(root)})
    assert main(["fetch"]) == 2
    # Named where it is missing, even in the image folder (not compared with itself).
    message = assert_failed(project, capsys, f"{root}/train/{folder}: missing [1]")
    assert "missing [2]" in message and "image: missing [1]" not in message.replace(f"{folder}: missing [1]", "")


# --- archive safety: nothing lands outside data/raw, whatever the member names and types ---

def write_archive(path: Path, root: Path, extra=(), skip=()) -> None:
    """``root``'s sample files as nyuv2/..., except the names in ``skip``, after the ``extra``
    members: (name, "file" | "symlink" | "hardlink", data or link target)."""
    samples = [(f"nyuv2/{p.relative_to(root).as_posix()}", "file", p.read_bytes()) for p in sorted(root.rglob("*.npy"))]
    members = [*extra, *(m for m in samples if m[0] not in skip)]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, kind, data in members:
                info = zipfile.ZipInfo(name)
                if kind == "symlink":  # how Info-ZIP stores one: the Unix mode, the target as data
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, data)
    else:
        with tarfile.open(path, "w") as tf:
            for name, kind, data in members:
                info = tarfile.TarInfo(name)
                if kind == "file":
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                else:
                    info.type, info.linkname = (tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE), data
                    tf.addfile(info)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.mark.parametrize("suffix", [".zip", ".tar"])
def test_archive_paths_and_links_leading_outside_are_skipped(project, tmp_path, dataset, capsys, suffix):
    root, samples = dataset
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = b"\x93NUMPY evil"
    hostile = [
        ("../escape.npy", "file", evil),
        ("nyuv2/../../escape.npy", "file", evil),
        (f"{outside}/absolute.npy", "file", evil),
        ("../train/image/0.npy", "file", evil),  # a sample name, but outside the archive
        ("nyuv2/train/image", "symlink", str(outside)),  # a folder link, then files "inside" it
        ("nyuv2/passwd", "symlink", "/etc/passwd"),
    ]
    if suffix == ".tar":
        hostile.append(("nyuv2/shadow", "hardlink", "/etc/shadow"))
    archive = tmp_path / f"hostile{suffix}"
    write_archive(archive, root, hostile)
    before = files_under(tmp_path)
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)  # the root's own files, none of the hostile ones
    # The project is tmp_path: only its data/raw is new, besides the stage's lock file in runs/.locks.
    created = files_under(tmp_path) - before
    lock_files = {p for p in created if p == "runs" or p.startswith("runs/.locks")}
    assert lock_files <= {"runs", "runs/.locks", "runs/.locks/data-raw.lock"}
    assert created - lock_files == {"data", "data/raw"} | {f"data/raw/{p}" for p in files_under(project / "data" / "raw")}
    assert not list(outside.iterdir())
    raw = project / "data" / "raw"
    assert files_under(raw) == {"SOURCE.json", "train", "val"} | {
        f"{split}/{folder}/{i}.npy" if i is not None else f"{split}/{folder}"
        for split, n in (("train", 2), ("val", 1)) for folder in ("image", "label", "depth", "normal")
        for i in (None, *range(n))}
    assert not [p for p in project.rglob("*") if "escape" in p.name or "absolute" in p.name]
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith(f"note: {archive}: skipped"))
    assert "../escape.npy" in note and "nyuv2/passwd (symbolic link to /etc/passwd)" in note
    assert "nyuv2/train/image (symbolic link to" in note


@pytest.mark.parametrize("suffix, kind", [(".zip", "symlink"), (".tar", "symlink"), (".tar", "hardlink")])
def test_sample_stored_as_a_link_is_a_clear_error(project, tmp_path, dataset, capsys, suffix, kind):
    root, _ = dataset
    archive = tmp_path / f"links{suffix}"
    target = "0.npy" if kind == "symlink" else "nyuv2/train/image/0.npy"
    write_archive(archive, root, [("nyuv2/train/image/1.npy", kind, target)], skip={"nyuv2/train/image/1.npy"})
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 2
    message = assert_failed(project, capsys, str(archive), "1 sample files are links",
                            f"nyuv2/train/image/1.npy ({'symbolic' if kind == 'symlink' else 'hard'} link to {target})",
                            "re-create the archive")
    assert ".raw" not in message  # never the temporary folder


def test_archive_with_its_root_only_outside_is_refused(project, tmp_path, dataset, capsys):
    root, _ = dataset
    archive = tmp_path / "climbing.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.npy")):
            zf.writestr(f"../nyuv2/{path.relative_to(root).as_posix()}", path.read_bytes())
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "does not contain MTAN's NYUv2", "members with absolute or '..' paths were "
                  "not considered: ../nyuv2/train/depth/0.npy")


def test_archive_missing_a_sample_names_the_archive(project, tmp_path, dataset, capsys):
    root, _ = dataset
    archive = tmp_path / "short.tar"
    write_archive(archive, root, skip={"nyuv2/train/normal/1.npy"})
    set_params(project, nyuv2={"local_path": str(archive)})
    assert main(["fetch"]) == 2
    message = assert_failed(project, capsys, f"{archive}:nyuv2/train/normal: missing [1]")
    assert ".raw" not in message


def test_synthetic_source_takes_the_same_path(project, tiny_params):
    from mbmt.data.synthetic import generate

    assert main(["fetch"]) == 0  # the tiny preset: synthetic, 8 + 4 scenes of 64x64
    cfg = tiny_params["data"]["synthetic"]
    raw = project / "data" / "raw"
    source = json.loads((raw / "SOURCE.json").read_text())
    assert (source["source"], source["seed"], source["counts"]) == ("synthetic", cfg["seed"], {"train": 8, "val": 4})
    expected = list(generate(4, 64, 64, cfg["seed"], split="test"))
    for index, sample in enumerate(expected):
        got = mtan_layout.read_sample(raw / "val", index)
        for name, value in sample.items():
            np.testing.assert_array_equal(got[name], np.asarray(value).astype(got[name].dtype))  # float32 on disk
    assert main(["preprocess"]) == 0
    attrs = read_attrs(project / "data/processed/test.h5")
    assert attrs["source"] == "synthetic" and set(attrs["modalities"].values()) == {"rendered"}

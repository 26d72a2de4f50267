"""`mbmt fetch`: download (against a real HTTP server on 127.0.0.1), resume, checksums, local copies."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
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
    """Serves ``files`` (request path, query included -> bytes; ``payload`` is /nyuv2.zip) with Range
    support. A path can answer an HTTP error (``errors``; a path not served answers 404) or another
    Content-Type (``types``); responses can be cut (``drops``) and Range ignored (``honour_range``)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.errors: dict[str, int] = {}
        self.types: dict[str, str] = {}
        self.honour_range = True
        self.drops = 0  # how many of the next responses are cut ...
        self.drop_after = 0  # ... after this many body bytes
        self.requests: list[dict] = []
        self.paths: list[str] = []  # the path of each request, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
                server.paths.append(self.path)
                if self.path in server.errors or self.path not in server.files:
                    self.send_error(server.errors.get(self.path, 404))
                    return
                data, start = server.files[self.path], 0
                requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if requested and server.honour_range and self.headers.get("If-Range") in (None, ETAG):
                    start = int(requested[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", server.types.get(self.path, "application/zip"))
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
        self.url = self.url_of("/nyuv2.zip")

    def url_of(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def payload(self) -> bytes:
        return self.files["/nyuv2.zip"]

    @payload.setter
    def payload(self, data: bytes) -> None:
        self.files["/nyuv2.zip"] = data


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


def zip_bytes(root: Path, prefix: str = "nyuv2/", only: str | None = None) -> bytes:
    """MTAN's archive: <prefix>{train,val}/..., plus macOS junk that must be ignored. With ``only``
    ("train" or "val"): that split's {image,label,depth,normal}/ alone under ``prefix``, as one
    archive of a split pair."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / only if only else root).rglob("*.npy")):
            zf.write(path, f"{prefix}{path.relative_to(root / only if only else root).as_posix()}")
        zf.writestr(f"__MACOSX/{prefix}image/._0.npy", b"junk")
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
    """The last command failed with an error (its lines to the end of stderr) containing
    ``fragments``; nothing in data/raw."""
    err = capsys.readouterr().err
    message = err[err.index("mbmt fetch: error:"):]
    for fragment in fragments:
        assert fragment in message
    assert not (project / "data" / "raw").exists()
    assert not list(project.glob("data/.raw*"))  # no temporary directory left over
    return message


def use_sources(project: Path, *sources, sha256: dict | None = None) -> None:
    """params data.nyuv2: download from ``sources`` in order, with the pins ``sha256``."""
    set_params(project, nyuv2={"sources": list(sources), "sha256": sha256 or {}, "local_path": None})


def read_record(project: Path) -> dict:
    return json.loads((project / "data/raw/SOURCE.json").read_text())


def raw_files(project: Path) -> dict[str, bytes]:
    """data/raw's sample files, by path inside it."""
    raw = project / "data" / "raw"
    return {p.relative_to(raw).as_posix(): p.read_bytes() for p in sorted(raw.rglob("*.npy"))}


def test_download_extracts_and_records_unpinned_hash(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    digest = hashlib.sha256(server.payload).hexdigest()
    use_sources(project, server.url)
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    out = capsys.readouterr().out
    assert f'data.nyuv2.sha256: {{"{server.url}": {digest}}}' in out  # how to pin it
    source = read_record(project)
    assert source["sha256"] == digest and source["sha256_pinned"] is False
    assert (source["origin"], source["url"], source["archive_root"]) == ("download", server.url, "nyuv2/")
    assert source["archive_bytes"] == len(server.payload) and source["counts"] == {"train": 2, "val": 1}
    assert source["failed_sources"] == []
    assert server.requests == [{"range": None, "if_range": None}]
    # The archive stays in data/downloads (a re-run of the stage does not download again).
    assert [p.name.split("-", 1)[1] for p in (project / "data/downloads").iterdir()] == ["nyuv2.zip"]
    assert main(["fetch"]) == 0 and len(server.requests) == 1


def test_interrupted_download_resumes_with_range(project, server, dataset):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.drops, server.drop_after = 1, 5000
    use_sources(project, server.url, sha256={server.url: hashlib.sha256(server.payload).hexdigest()})
    assert main(["fetch"]) == 0
    assert server.requests == [{"range": None, "if_range": None}, {"range": "bytes=5000-", "if_range": ETAG}]
    assert_raw_matches(project, samples)


def test_failed_download_is_resumed_by_the_next_run(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.drops, server.drop_after = DOWNLOAD_ATTEMPTS, 3000
    dead = server.url_of("/gone.zip")
    use_sources(project, dead, server.url, sha256={server.url: hashlib.sha256(server.payload).hexdigest()})
    assert main(["fetch"]) == 2
    kept = 3000 * DOWNLOAD_ATTEMPTS
    message = assert_failed(project, capsys, f"1. {dead}: HTTP 404", f"2. {server.url}: download failed after "
                            f"{DOWNLOAD_ATTEMPTS} attempts", f"keeps the {kept} bytes received",
                            "re-running `mbmt fetch` resumes")
    assert "data.nyuv2.local_path" in message
    [part] = (project / "data/downloads").glob("*.part")
    assert part.stat().st_size == kept
    assert main(["fetch"]) == 0  # a new process, as a retried pipeline stage
    assert server.requests[-1]["range"] == f"bytes={kept}-"
    assert_raw_matches(project, samples)
    assert not list((project / "data/downloads").glob("*.part*"))
    record = read_record(project)
    assert record["url"] == server.url and record["sha256_pinned"] is True
    assert record["failed_sources"] == [{"source": dead, "reason": "HTTP 404 Not Found"}]


def test_server_ignoring_range_restarts_cleanly(project, server, dataset):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.honour_range, server.drops, server.drop_after = False, 1, 5000
    use_sources(project, server.url, sha256={server.url: hashlib.sha256(server.payload).hexdigest()})
    assert main(["fetch"]) == 0  # appending the 200 body to the partial file would fail the checksum
    assert server.requests[1]["range"] == "bytes=5000-"
    assert_raw_matches(project, samples)


def test_wrong_checksum_removes_the_download(project, server, dataset, capsys):
    root, _ = dataset
    server.payload = zip_bytes(root)
    actual = hashlib.sha256(server.payload).hexdigest()
    use_sources(project, server.url, sha256={server.url: "0" * 64})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "sha256 mismatch", "0" * 64, actual, "removed", f'entry "{server.url}"')
    assert not list((project / "data/downloads").iterdir())


def test_truncated_archive_is_an_error(project, server, dataset, capsys):
    root, _ = dataset
    server.payload = zip_bytes(root)[:-2000]  # what a server that cut the file short would deliver
    use_sources(project, server.url)
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "truncated or corrupt archive", "removed")
    assert not list((project / "data/downloads").iterdir())


def test_http_error_names_the_url(project, server, capsys):
    server.errors["/nyuv2.zip"] = 403
    use_sources(project, server.url)
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, f"1. {server.url}: HTTP 403 Forbidden", "data.nyuv2.local_path")
    assert len(server.requests) == 1  # a client error is not retried


# --- several sources: each is tried in turn --------------------------------------------------

def test_dead_first_source_falls_through_to_the_next(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    dead = server.url_of("/s/gone/nyuv2.zip?dl=1")
    use_sources(project, dead, server.url)
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    assert server.paths == ["/s/gone/nyuv2.zip?dl=1", "/nyuv2.zip"]
    record = read_record(project)
    assert record["url"] == server.url
    assert record["failed_sources"] == [{"source": dead, "reason": "HTTP 404 Not Found"}]
    assert f"note: {dead}: HTTP 404 Not Found; trying the next source" in capsys.readouterr().out


@pytest.mark.parametrize("announced", [True, False], ids=["content-type", "first-bytes"])
def test_web_page_instead_of_an_archive_is_skipped(project, server, dataset, announced):
    """A dl=0 Dropbox link serves its preview page; recognised by its Content-Type, or else by its
    first bytes (a server may call it anything)."""
    root, samples = dataset
    server.payload = zip_bytes(root)
    page = "/s/p2nn02wijg7peiy/nyuv2.zip?dl=0"
    server.files[page] = b"\n<!DOCTYPE html><html><head><title>Dropbox</title></head><body>preview</body></html>"
    server.types[page] = "text/html; charset=utf-8" if announced else "application/octet-stream"
    use_sources(project, server.url_of(page), server.url)
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    [failure] = read_record(project)["failed_sources"]
    assert failure["source"] == server.url_of(page)
    assert "a web page, not an archive; Dropbox links need dl=1" in failure["reason"]
    assert ("Content-Type text/html" in failure["reason"]) == announced
    assert ("'<!DOCTYPE html>'" in failure["reason"]) != announced  # the file's first bytes, quoted
    # The page is not kept as if it were a partial archive (a re-run must not resume it).
    assert [p.name.split("-", 1)[1] for p in (project / "data/downloads").iterdir()] == ["nyuv2.zip"]


def test_every_source_failing_is_one_error_listing_each(project, server, dataset, capsys):
    root, _ = dataset
    server.files["/page?dl=0"] = b"<html><body>a preview</body></html>"
    server.types["/page?dl=0"] = "text/html"
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("photos/train/0.png", b"png")
        zf.writestr("photos/val/0.png", b"png")
        zf.writestr("README.txt", b"not MTAN")
    server.files["/other.zip"] = other.getvalue()
    server.files["/val.zip"] = zip_bytes(root, prefix="val/", only="val")
    sources = [server.url_of("/gone.zip"), server.url_of("/page?dl=0"), server.url_of("/other.zip"),
               {"train": server.url_of("/train-gone.zip"), "val": server.url_of("/val.zip")}]
    use_sources(project, *sources)
    assert main(["fetch"]) == 2
    message = assert_failed(
        project, capsys,
        "none of the 4 sources in params data.nyuv2.sources gave MTAN's NYUv2 (tried in order):",
        f"\n  1. {sources[0]}: HTTP 404 Not Found\n",
        f"\n  2. {sources[1]}: a web page, not an archive; Dropbox links need dl=1",
        f"\n  3. {sources[2]}: ",
        # what the archive holds, not only what was expected
        "it holds 3 files; top level: photos/ (2 files), README.txt; first files: photos/train/0.png",
        f"\n  4. train {sources[3]['train']} + val {sources[3]['val']}: train archive: HTTP 404 Not Found\n",
        "set params data.nyuv2.local_path", "re-running `mbmt fetch` resumes them")
    assert message.count("\n  ") == 4  # one line per source
    assert "/val.zip" not in server.paths  # a pair whose train half is dead is not downloaded further


def test_split_pair_is_joined_into_the_single_archives_tree(project, server, dataset, capsys):
    root, samples = dataset
    server.payload = zip_bytes(root)
    use_sources(project, server.url)
    assert main(["fetch"]) == 0
    single = raw_files(project)
    # The train half is a whole MTAN tree (its train/ is taken, not the shorter-named val/); the val
    # half holds val's folders under nyuv2/val/.
    server.files["/sh/train?dl=1"] = zip_bytes(root)
    server.files["/sh/val?dl=1"] = zip_bytes(root, prefix="nyuv2/val/", only="val")
    pair = {"train": server.url_of("/sh/train?dl=1"), "val": server.url_of("/sh/val?dl=1")}
    digests = {split: hashlib.sha256(server.files[f"/sh/{split}?dl=1"]).hexdigest() for split in pair}
    use_sources(project, pair, sha256={pair["train"]: digests["train"]})
    assert main(["fetch"]) == 0
    assert raw_files(project) == single
    assert_raw_matches(project, samples)
    record = read_record(project)
    assert record["url"] == pair and record["failed_sources"] == []
    assert record["archive_root"] == {"train": "nyuv2/train/", "val": "nyuv2/val/"}
    assert record["sha256"] == digests
    assert record["sha256_pinned"] == {"train": True, "val": False}
    assert record["counts"] == {"train": 2, "val": 1}
    out = capsys.readouterr().out
    assert f'{{"{pair["val"]}": {digests["val"]}}}' in out and f'"{pair["train"]}"' not in out


@pytest.mark.parametrize("pair", [False, True], ids=["single", "split-pair"])
def test_tree_is_found_under_any_prefix(project, server, dataset, pair):
    """A Dropbox folder download's inner layout is not known in advance."""
    root, samples = dataset
    prefix = "Dropbox export/MTAN data/"
    if pair:
        server.files["/t.zip"] = zip_bytes(root, prefix=f"{prefix}part-a/", only="train")
        server.files["/v.zip"] = zip_bytes(root, prefix="", only="val")
        use_sources(project, {"train": server.url_of("/t.zip"), "val": server.url_of("/v.zip")})
        roots = {"train": f"{prefix}part-a/", "val": ""}
    else:
        server.payload = zip_bytes(root, prefix=prefix)
        use_sources(project, server.url)
        roots = prefix
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    assert read_record(project)["archive_root"] == roots


def test_split_archive_without_its_folders_says_what_it_holds(project, server, dataset, capsys):
    root, _ = dataset
    server.files["/t.zip"] = zip_bytes(root, prefix="train/", only="train")
    server.files["/v.zip"] = zip_bytes(root, prefix="val/", only="val").replace(b"image/", b"imagz/")
    use_sources(project, {"train": server.url_of("/t.zip"), "val": server.url_of("/v.zip")})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, "does not contain MTAN's NYUv2 (the val archive of a split pair: expected one "
                  "split's folders [<any folder>/]{image,label,depth,normal}/<i>.npy): it holds 5 files; top level: "
                  "val/ (4 files), __MACOSX/ (1 files)")


def test_checksum_pins_are_per_url(project, server, dataset):
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.files["/mirror.zip"] = server.payload
    digest = hashlib.sha256(server.payload).hexdigest()
    mirror = server.url_of("/mirror.zip")
    use_sources(project, server.url, mirror, sha256={server.url: "f" * 64, mirror: digest})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    record = read_record(project)
    assert (record["url"], record["sha256"], record["sha256_pinned"]) == (mirror, digest, True)
    [failure] = record["failed_sources"]
    assert failure["source"] == server.url
    assert f"sha256 mismatch: expected {'f' * 64}" in failure["reason"] and f"got {digest}" in failure["reason"]
    assert [p.name.split("-", 1)[1] for p in (project / "data/downloads").iterdir()] == ["mirror.zip"]


def test_source_with_an_incomplete_tree_is_passed_over_without_leftovers(project, server, dataset, tmp_path):
    """The first archive has a third training sample without its normal map: its extracted files
    must not mix with the next source's (which has two samples)."""
    root, samples = dataset
    server.payload = zip_bytes(root)
    extra = tmp_path / "extra" / "nyuv2"
    shutil.copytree(root, extra)
    for folder in ("image", "label", "depth"):
        shutil.copy(extra / "train" / folder / "0.npy", extra / "train" / folder / "2.npy")
    server.files["/extra.zip"] = zip_bytes(extra)
    use_sources(project, server.url_of("/extra.zip"), server.url)
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)  # two training samples, not three
    [failure] = read_record(project)["failed_sources"]
    assert "-extra.zip:nyuv2/train/normal: missing [2]" in failure["reason"]


def test_pinned_local_archive_is_verified(project, dataset, capsys):
    root, samples = dataset
    archive = root.parent / "copy.zip"
    archive.write_bytes(zip_bytes(root))
    set_params(project, nyuv2={"local_path": str(archive), "sha256": {str(archive): "0" * 64}})
    assert main(["fetch"]) == 2
    assert_failed(project, capsys, f"{archive}: sha256 mismatch: expected {'0' * 64} (params data.nyuv2.sha256 "
                  f'entry "{archive}")', "check the file, or update that entry")
    assert archive.exists()  # the user's file is never removed
    set_params(project, nyuv2={"sha256": {str(archive): hashlib.sha256(archive.read_bytes()).hexdigest()}})
    assert main(["fetch"]) == 0
    assert_raw_matches(project, samples)
    assert read_record(project)["sha256_pinned"] is True


def test_partial_download_of_a_skipped_source_is_kept(project, server, dataset):
    """A source cut short in every attempt is passed over, and its partial file waits for the next run."""
    root, samples = dataset
    server.payload = zip_bytes(root)
    server.files["/mirror.zip"] = server.payload
    server.drops, server.drop_after = DOWNLOAD_ATTEMPTS, 2000
    use_sources(project, server.url, server.url_of("/mirror.zip"))
    assert main(["fetch"]) == 0
    assert read_record(project)["url"] == server.url_of("/mirror.zip")
    [part] = (project / "data/downloads").glob("*-nyuv2.zip.part")
    assert part.stat().st_size == 2000 * DOWNLOAD_ATTEMPTS
    assert main(["fetch"]) == 0  # the first source, resumed
    assert server.requests[-1]["range"] == f"bytes={2000 * DOWNLOAD_ATTEMPTS}-"
    assert read_record(project)["url"] == server.url
    assert_raw_matches(project, samples)


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

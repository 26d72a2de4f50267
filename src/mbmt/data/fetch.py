"""Get the raw dataset into data/raw/ in MTAN's layout, and record where it came from.

Sources (params ``data``):

- ``nyuv2`` with ``nyuv2.local_path: null``: download MTAN's archive from ``nyuv2.url``. The
  partial file lives in data/downloads/ (not a stage output, so a failed or killed stage resumes
  it with an HTTP Range request); ``nyuv2.sha256``, when pinned, is verified.
- ``nyuv2`` with ``nyuv2.local_path``: an archive (.zip, .tar, .tar.gz/.tgz) or an extracted folder
  (the MTAN root, or a folder holding ``nyuv2/``) that the user already has.
- ``synthetic``: the built-in scene generator, rendered into the same layout so it takes the same
  preprocess path as the real archive.

data/raw/ is built in a temporary sibling directory and renamed at the end: it is either
complete, with SOURCE.json describing it, or untouched.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from mbmt import __version__
from mbmt.data import mtan_layout
from mbmt.data.hdf5 import GROUND_TRUTH, MODALITIES, RENDERED
from mbmt.errors import DataError
from mbmt.io import atomic_path, sha256_file, write_json
from mbmt.paths import DOWNLOAD_DIR, RAW_DIR

SOURCE_FILE = "SOURCE.json"  # provenance of data/raw, read by preprocess
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
DOWNLOAD_ATTEMPTS = 3  # per `mbmt fetch`; a later run resumes from where these stopped
RETRY_DELAY_S = 2.0  # before retrying an attempt that received nothing (times the attempt number)
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20

# A sample file inside an MTAN root: <split>/<modality folder>/<index>.npy
_MEMBER = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<rel>(?:train|val)/(?:image|label|depth|normal)/\d+\.npy)$")
_ROOT_MARK = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<split>train|val)/image/\d+\.npy$")

LAYOUT_HINT = "expected MTAN's layout [nyuv2/]{train,val}/{image,label,depth,normal}/<i>.npy"


class _Interrupted(Exception):
    """One download attempt stopped early; the partial file is kept for the next attempt."""


def fetch(params: dict, *, raw_dir: Path = RAW_DIR, download_dir: Path = DOWNLOAD_DIR) -> dict:
    """Fill ``raw_dir`` (an MTAN root) from params ``data`` and return its SOURCE.json record."""
    data = params["data"]
    with atomic_path(raw_dir, directory=True) as tmp:
        if data["source"] == "synthetic":
            record, origin = render_synthetic(data, tmp), "synthetic:"
        else:
            record, origin = fetch_nyuv2(data["nyuv2"], tmp, download_dir)
        # Validates the layout: every modality holds the same samples 0..n-1. Messages name where
        # the files came from, not the temporary folder (removed by then).
        record["counts"] = {folder: mtan_layout.sample_count(tmp / folder, shown_as=f"{origin}{folder}")
                            for folder in mtan_layout.SPLIT_FOLDERS.values()}
        record["raw_bytes"] = sum(p.stat().st_size for p in tmp.rglob("*.npy"))
        record["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record["mbmt_version"] = __version__
        write_json(tmp / SOURCE_FILE, record)
    return record


def read_source(raw_dir: Path = RAW_DIR) -> dict:
    """data/raw/SOURCE.json, or a DataError saying how to create it."""
    path = Path(raw_dir) / SOURCE_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `mbmt fetch` first (to use a copy of MTAN's NYUv2 you "
                        "already have, set params data.nyuv2.local_path rather than copying it into data/raw)")
    return json.loads(path.read_text())


# --- sources ---------------------------------------------------------------------------------

def render_synthetic(data: dict, dest: Path) -> dict:
    """Render the synthetic train and test scenes into ``dest`` in MTAN's layout."""
    from mbmt.data.synthetic import generate

    cfg = data["synthetic"]
    counts = {"train": cfg["train_size"], "test": cfg["test_size"]}
    for split, count in counts.items():
        out = mtan_layout.split_dir(dest, split)
        # Fetch starts the DAG, so nothing else competes for the cores; the output is identical
        # for any worker count.
        scenes = generate(count, data["height"], data["width"], cfg["seed"], split=split,
                          workers=os.cpu_count() or 1)
        for index, sample in enumerate(tqdm(scenes, total=count, desc=f"render {split}", unit="scene")):
            mtan_layout.write_sample(out, index, sample)
    return {
        "source": "synthetic", "origin": "generator", "generator": "mbmt.data.synthetic.generate",
        "seed": cfg["seed"], "height": data["height"], "width": data["width"],
        "modalities": dict.fromkeys(MODALITIES, RENDERED),
    }


def fetch_nyuv2(cfg: dict, dest: Path, download_dir: Path = DOWNLOAD_DIR) -> tuple[dict, str]:
    """Download or copy MTAN's NYUv2 into ``dest``; returns the provenance record, and the root it
    copied as messages name it: ``FOLDER/`` or ``ARCHIVE:PATH-INSIDE/``."""
    record = {"source": "nyuv2", "origin": None, "url": None, "local_path": None, "sha256": None,
              "sha256_pinned": False, "archive_bytes": None, "modalities": dict.fromkeys(MODALITIES, GROUND_TRUTH)}
    expected = cfg["sha256"]
    if cfg["local_path"]:
        path = Path(cfg["local_path"]).expanduser()
        record["local_path"] = str(path.resolve())
        if not path.exists():
            raise DataError(f"params data.nyuv2.local_path: {path} does not exist; point it at MTAN's nyuv2.zip "
                            "or its extracted folder, or set it to null to download from data.nyuv2.url")
        if path.is_dir():
            if expected:
                print(f"note: data.nyuv2.sha256 is pinned but {path} is a folder; checksums apply to archives only")
            root = copy_mtan_folder(path, dest)
            return {**record, "origin": "local folder"}, f"{root}/"
        archive, downloaded = path, False
        record["origin"] = "local archive"
    else:
        archive = download(cfg["url"], download_dir / _download_name(cfg["url"]))
        downloaded = True
        record.update(origin="download", url=cfg["url"], archive=str(archive))
    archive_kind(archive)  # an unsupported file type fails before it is hashed
    digest = sha256_file(archive)
    record.update(sha256=digest, sha256_pinned=bool(expected), archive_bytes=archive.stat().st_size)
    if expected and digest != expected:
        if downloaded:
            archive.unlink()
        fix = ("it was removed: re-run `mbmt fetch` to download it again, or update data.nyuv2.sha256 if the "
               "archive changed upstream") if downloaded else "check the file, or update data.nyuv2.sha256"
        raise DataError(f"{archive}: sha256 mismatch: expected {expected} (params data.nyuv2.sha256), got {digest}; {fix}")
    try:
        record["archive_root"] = extract_mtan_archive(archive, dest)
    except _CorruptArchive as exc:
        if downloaded:
            archive.unlink()
        fix = ("it was removed: re-run `mbmt fetch` to download it again" if downloaded
               else "replace it, or set data.nyuv2.local_path to null to download")
        raise DataError(f"{archive}: truncated or corrupt archive ({exc}); {fix}") from None
    if not expected:
        print(f"sha256 of {archive}: {digest}\n"
              "data.nyuv2.sha256 is not pinned (null): this hash is recorded in data/raw/SOURCE.json. To verify "
              f"later downloads against it, set data.nyuv2.sha256: {digest} in params.yaml")
    return record, f"{archive}:{record['archive_root']}"


def _download_name(url: str) -> str:
    """A file name for ``url`` in data/downloads: its basename, prefixed with a hash of the URL
    so a changed URL never resumes another URL's partial file."""
    name = Path(urlsplit(url).path).name or "archive"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


# --- download ----------------------------------------------------------------------------------

def download(url: str, dest: Path, *, attempts: int = DOWNLOAD_ATTEMPTS) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest``.part; returns ``dest``.

    A complete ``dest`` from an earlier run is reused. Up to ``attempts`` requests are made; a
    transfer that stops early is resumed with ``Range`` (and ``If-Range``, so a file that changed
    on the server restarts from zero instead of being spliced). If all attempts fail, the partial
    file stays for the next run.
    """
    if dest.is_file():
        print(f"using {dest}, downloaded earlier (delete it to download again)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        before = _size(part)
        try:
            _transfer(url, part)
            break
        except _Interrupted as exc:
            reason = exc
        if attempt < attempts and _size(part) <= before:
            time.sleep(RETRY_DELAY_S * attempt)  # nothing received: give the server a moment
    else:
        raise DataError(f"{url}: download failed after {attempts} attempts ({reason}); {part} keeps the "
                        f"{_size(part)} bytes received: re-run `mbmt fetch` to resume, or download the archive "
                        "yourself and set params data.nyuv2.local_path")
    part.rename(dest)
    _meta_file(part).unlink(missing_ok=True)
    return dest


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _meta_file(part: Path) -> Path:
    """The validators (ETag, Last-Modified) of the response a partial file came from."""
    return part.with_name(part.name + ".json")


def _transfer(url: str, part: Path) -> None:
    """One request: append to ``part`` from its current size (or restart it); _Interrupted if short."""
    offset = _size(part)
    headers = {"User-Agent": f"mbmt/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = _read_validator(part)
        if validator:
            headers["If-Range"] = validator
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: complete, or the remote file shrank
            total = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", ""))
            if total and int(total[1]) == offset:
                return
            part.unlink()
            raise _Interrupted("the server rejected the resume offset; restarting") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}; check params data.nyuv2.url, or download the "
                        "archive yourself and set params data.nyuv2.local_path") from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"cannot reach the server: {getattr(exc, 'reason', exc)}") from None
    with response:
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != offset:
                part.unlink()
                raise _Interrupted("the server answered a different range than requested; restarting")
            total = None if match[2] == "*" else int(match[2])
            mode = "ab"
        else:  # 200: the whole file (the server ignores Range, or If-Range found it changed)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            _meta_file(part).write_text(json.dumps({"url": url, "etag": response.headers.get("ETag"),
                                                    "last_modified": response.headers.get("Last-Modified")}))
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=part.name.removesuffix(".part")) as bar:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _Interrupted(f"connection lost: {exc}") from None
    if total is not None and _size(part) < total:
        raise _Interrupted(f"the connection closed after {_size(part)} of {total} bytes")


def _read_validator(part: Path) -> str | None:
    """The If-Range value for resuming ``part``: a strong ETag, else Last-Modified."""
    try:
        meta = json.loads(_meta_file(part).read_text())
    except (OSError, ValueError):
        return None
    etag = meta.get("etag")
    return etag if etag and not etag.startswith("W/") else meta.get("last_modified")


# --- archives and folders ----------------------------------------------------------------------

class _CorruptArchive(Exception):
    """The archive cannot be read to the end."""


def archive_kind(path: Path) -> str:
    """"zip" or "tar", from the file name or else the file's first bytes; DataError for anything else."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "tar"
    with open(path, "rb") as f:
        head = f.read(262)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b") or head[257:262] == b"ustar":  # gzip, or a plain POSIX tar
        return "tar"
    raise DataError(f"{path}: not a zip or tar archive; expected {', '.join(ARCHIVE_SUFFIXES)} or an extracted folder")


@contextmanager
def _open_archive(path: Path) -> Iterator[tuple[list[str], dict[str, str], Callable[[str], IO[bytes]]]]:
    """The names of the regular files in the archive; its links and special files (name -> what it
    is), which are never opened; and a function opening a regular file."""
    if archive_kind(path) == "zip":
        with zipfile.ZipFile(path) as zf:
            entries = [i for i in zf.infolist() if not i.is_dir()]
            # A zip symlink (Unix mode in the high bits) stores its target as the entry's data.
            special = {i.filename: f"symbolic link to {zf.read(i).decode(errors='replace')}"
                       for i in entries if stat.S_ISLNK(i.external_attr >> 16)}
            yield [i.filename for i in entries if i.filename not in special], special, zf.open
    else:
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            files = {m.name: m for m in members if m.isfile()}
            special = {m.name: _tar_special(m) for m in members if not (m.isfile() or m.isdir())}
            yield list(files), special, lambda name: tf.extractfile(files[name])


def _tar_special(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname}"
    if member.islnk():
        return f"hard link to {member.linkname}"
    return "device or fifo"


def _leaves_archive(name: str) -> bool:
    """Whether member ``name`` is absolute or climbs out with '..'."""
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def _listing(names: list[str], special: dict[str, str], shown: int = 10) -> str:
    items = [f"{name} ({special[name]})" if name in special else name for name in names[:shown]]
    return ", ".join(items) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _find_prefix(names: list[str]) -> str | None:
    """The path inside an archive (or "") of the shortest MTAN root among ``names``."""
    splits: dict[str, set[str]] = {}
    for name in names:
        if match := _ROOT_MARK.match(name):
            splits.setdefault(match["prefix"], set()).add(match["split"])
    roots = [prefix for prefix, found in splits.items() if found == {"train", "val"}]
    return min(roots, key=len) if roots else None


def extract_mtan_archive(archive: Path, dest: Path) -> str:
    """Extract the MTAN root inside ``archive`` into ``dest`` (train/, val/); returns its path in the archive.

    Safe by construction: only regular files named like a sample of the root are read, and each is
    written to ``dest``/<split>/<modality>/<i>.npy, a path made from the name pattern, never one
    taken from the archive. Members with absolute or '..' paths, links and special files are
    skipped, and listed; a sample stored as a link is an error (skipping it would drop the sample).
    """
    try:
        with _open_archive(archive) as (files, special, open_member):
            outside = sorted(name for name in [*files, *special] if _leaves_archive(name))
            files = [name for name in files if not _leaves_archive(name)]
            special = {name: what for name, what in special.items() if not _leaves_archive(name)}
            prefix = _find_prefix([*files, *special])
            if prefix is None:
                ignored = (f"; {len(outside)} members with absolute or '..' paths were not considered: "
                           f"{_listing(outside, {})}" if outside else "")
                raise DataError(f"{archive}: does not contain MTAN's NYUv2 ({LAYOUT_HINT}){ignored}; check params "
                                "data.nyuv2.url / local_path")
            linked = sorted(name for name in special if (match := _MEMBER.match(name)) and match["prefix"] == prefix)
            if linked:
                raise DataError(f"{archive}: {len(linked)} sample files are links ({_listing(linked, special)}), "
                                "which are never extracted, for safety; re-create the archive with the files "
                                "themselves (tar --dereference --hard-dereference; zip without --symlinks)")
            skipped = sorted([*outside, *special])
            if skipped:
                print(f"note: {archive}: skipped {len(skipped)} members that are links, special files or paths "
                      f"outside the archive (never extracted, for safety): {_listing(skipped, special)}")
            members = [(name, match["rel"]) for name in files
                       if (match := _MEMBER.match(name)) and match["prefix"] == prefix]
            for name, rel in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open_member(name) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise _CorruptArchive(str(exc) or type(exc).__name__) from None
    return prefix


def copy_mtan_folder(path: Path, dest: Path) -> Path:
    """Copy the sample files of the MTAN root ``path`` (or ``path``/nyuv2) into ``dest``; returns that root."""
    root = next((p for p in (path, path / "nyuv2") if mtan_layout.is_root(p)), None)
    if root is None:
        raise DataError(f"params data.nyuv2.local_path: {path} does not contain MTAN's NYUv2 ({LAYOUT_HINT})")
    files = []
    for src in sorted(root.rglob("*.npy")):
        rel = src.relative_to(root).as_posix()
        if (match := _MEMBER.match(rel)) and not match["prefix"]:
            files.append((src, rel))
    for src, rel in tqdm(files, desc=f"copy {root}", unit="file"):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return root

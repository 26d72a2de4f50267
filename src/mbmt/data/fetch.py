"""Get the raw dataset into data/raw/ in MTAN's layout, and record where it came from.

Sources (params ``data``):

- ``nyuv2`` with ``nyuv2.local_path: null``: the first of ``nyuv2.sources`` that gives MTAN's
  NYUv2, tried in order. A source is one archive URL (MTAN's tree anywhere inside it) or a
  ``{train: URL, val: URL}`` pair of archives, one per split, joined into one MTAN root. A source
  that fails (HTTP error, unreachable, a web page, a corrupt archive, no MTAN tree inside, a
  checksum mismatch) is recorded with its reason and the next is tried; when all fail, one
  DataError lists them. Partial files live in data/downloads/ (not a stage output, so a failed
  or killed stage resumes them with an HTTP Range request); an archive whose URL has an entry
  in ``nyuv2.sha256`` is verified. A source may also be a dataset repository on the Hugging Face
  Hub at a pinned revision (``{hub, revision, shards, shape}``), whose Parquet files are converted
  into MTAN's layout, every array checked (mbmt.data.hub_mirror).
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from mbmt import __version__
from mbmt import hub
from mbmt.data import hub_mirror, mtan_layout
from mbmt.data.hdf5 import GROUND_TRUTH, MODALITIES, RENDERED
from mbmt.errors import DataError
from mbmt.io import atomic_path, sha256_file, write_json
from mbmt.paths import DOWNLOAD_DIR, RAW_DIR

SOURCE_FILE = "SOURCE.json"  # provenance of data/raw, read by preprocess
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
DOWNLOAD_ATTEMPTS = 3  # per source and `mbmt fetch`; a later run resumes from where these stopped
RETRY_DELAY_S = 2.0  # before retrying an attempt that received nothing (times the attempt number)
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
SPLITS = tuple(mtan_layout.SPLIT_FOLDERS.values())  # MTAN's split folders, the keys of a split pair

# A sample file inside an MTAN root: <split>/<modality folder>/<index>.npy
_MEMBER = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<rel>(?:train|val)/(?:image|label|depth|normal)/\d+\.npy)$")
_ROOT_MARK = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<split>train|val)/image/\d+\.npy$")
# A sample file inside one split's archive (a pair's train or val half): <modality folder>/<index>.npy
_SPLIT_MEMBER = re.compile(r"^(?P<prefix>(?:.*/)?)(?P<rel>(?:image|label|depth|normal)/\d+\.npy)$")
_SPLIT_MARK = re.compile(r"^(?P<prefix>(?:.*/)?)image/\d+\.npy$")

LAYOUT_HINT = "expected MTAN's layout [nyuv2/]{train,val}/{image,label,depth,normal}/<i>.npy"
ARCHIVE_LAYOUT_HINT = "expected MTAN's layout [<any folder>/]{train,val}/{image,label,depth,normal}/<i>.npy"
SPLIT_LAYOUT_HINT = "expected one split's folders [<any folder>/]{image,label,depth,normal}/<i>.npy"
WEB_PAGE = "a web page, not an archive; Dropbox links need dl=1"


class _Interrupted(Exception):
    """One download attempt stopped early; the partial file is kept for the next attempt."""


class SourceFailed(Exception):
    """One entry of data.nyuv2.sources did not give MTAN's NYUv2; the message says why, and what
    became of its files, so that the error listing every source can quote it."""


@dataclass(frozen=True)
class Archive:
    """One archive file to extract: the whole MTAN tree (``split`` None) or one split's folders."""
    path: Path
    split: str | None
    pin_key: str | None  # its key in params data.nyuv2.sha256: the URL, or local_path as written
    downloaded: bool  # a download (removed when bad, so the next run fetches it again) or the user's file


def fetch(params: dict, *, raw_dir: Path = RAW_DIR, download_dir: Path = DOWNLOAD_DIR) -> dict:
    """Fill ``raw_dir`` (an MTAN root) from params ``data`` and return its SOURCE.json record."""
    data = params["data"]
    with atomic_path(raw_dir, directory=True) as tmp:
        if data["source"] == "synthetic":
            record = render_synthetic(data, tmp)
            record["counts"] = count_samples(tmp, {folder: f"synthetic:{folder}" for folder in SPLITS})
        else:
            record = fetch_nyuv2(data["nyuv2"], tmp, download_dir)
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


def count_samples(root: Path, shown: dict[str, str]) -> dict[str, int]:
    """Samples per split folder of the MTAN root ``root``. Validates the layout: every modality
    holds the same samples 0..n-1. Messages name each split folder as ``shown`` says (where its
    files came from), never the temporary folder, which is removed by then."""
    return {folder: mtan_layout.sample_count(root / folder, shown_as=shown[folder]) for folder in SPLITS}


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


def fetch_nyuv2(cfg: dict, dest: Path, download_dir: Path = DOWNLOAD_DIR) -> dict:
    """Copy ``cfg["local_path"]`` into ``dest``, or else the first of ``cfg["sources"]`` that gives
    MTAN's NYUv2; returns the provenance record, sample counts included."""
    if cfg["local_path"]:
        return copy_local_nyuv2(cfg, dest)
    failed: list[dict] = []
    for number, source in enumerate(cfg["sources"], 1):
        try:
            record = download_source(source, cfg["sha256"], dest, download_dir)
        except SourceFailed as exc:
            failed.append({"source": source, "reason": str(exc)})
            if number < len(cfg["sources"]):
                print(f"note: {describe_source(source)}: {exc}; trying the next source")
            _empty_folder(dest)  # what a failed source extracted must not mix with the next one's files
            continue
        return {**record, "failed_sources": failed}
    raise DataError(all_sources_failed(failed, download_dir))


def describe_source(source: str | dict) -> str:
    """An entry of data.nyuv2.sources as messages name it."""
    if hub_mirror.is_hub_source(source):
        return hub_mirror.describe(source)
    return source if isinstance(source, str) else " + ".join(f"{split} {source[split]}" for split in SPLITS)


def all_sources_failed(failed: list[dict], download_dir: Path) -> str:
    """The message when every source failed: each one with its reason, then the ways out."""
    lines = [f"none of the {len(failed)} sources in params data.nyuv2.sources gave MTAN's NYUv2 (tried in order):"]
    lines += [f"  {number}. {describe_source(entry['source'])}: {entry['reason']}"
              for number, entry in enumerate(failed, 1)]
    lines.append(f"Partial downloads stay in {download_dir}/ (the Hub's in its cache): re-running `mbmt fetch` "
                 "resumes them. Or get "
                 "MTAN's NYUv2 another way and set params data.nyuv2.local_path to the archive (.zip, .tar, "
                 ".tar.gz) or its extracted folder.")
    return "\n".join(lines)


def download_source(source: str | dict, pins: dict[str, str], dest: Path, download_dir: Path) -> dict:
    """Download one entry of data.nyuv2.sources and extract MTAN's root from it into ``dest``;
    SourceFailed, saying why, if it does not give MTAN's NYUv2."""
    if hub_mirror.is_hub_source(source):
        try:
            return hub_mirror.fetch_mirror(source, dest)
        except (hub.Missing, hub.Unavailable) as exc:
            from huggingface_hub import constants

            raise SourceFailed(f"{constants.ENDPOINT}: {exc}") from None
        except DataError as exc:  # the message names the file, row and column
            raise SourceFailed(f"{exc} (nothing of it was kept)") from None
    urls = {None: source} if isinstance(source, str) else {split: source[split] for split in SPLITS}
    archives = []
    for split, url in urls.items():  # every archive of a pair is downloaded before either is extracted
        try:
            path = download(url, download_dir / _download_name(url))
            _check_is_archive(path)
        except SourceFailed as exc:
            raise SourceFailed(f"{split} archive: {exc}" if split else str(exc)) from None
        archives.append(Archive(path, split, pin_key=url, downloaded=True))
    try:
        record = extract_archives(archives, pins, dest)
    except DataError as exc:  # the message names the archive
        raise SourceFailed(str(exc)) from None
    return {"source": "nyuv2", "origin": "download", "url": source, "local_path": None, **record}


def _check_is_archive(path: Path) -> None:
    """SourceFailed, removing the file, unless the download ``path`` is a zip or tar archive (a
    server may answer a dead or dl=0 link with a web page and no text/html Content-Type)."""
    try:
        archive_kind(path)
    except DataError as exc:
        path.unlink()
        raise SourceFailed(f"{exc}; removed") from None


def copy_local_nyuv2(cfg: dict, dest: Path) -> dict:
    """Copy ``data.nyuv2.local_path`` (an archive or an extracted folder) into ``dest``."""
    written = cfg["local_path"]
    path = Path(written).expanduser()
    record = {"source": "nyuv2", "origin": None, "url": None, "local_path": str(path.resolve()),
              "failed_sources": []}
    if not path.exists():
        raise DataError(f"params data.nyuv2.local_path: {path} does not exist; point it at MTAN's nyuv2.zip "
                        "or its extracted folder, or set it to null to download from data.nyuv2.sources")
    if path.is_dir():
        if written in cfg["sha256"]:
            print(f"note: data.nyuv2.sha256 has an entry for {written}, a folder; checksums apply to archives only")
        root = copy_mtan_folder(path, dest)
        counts = count_samples(dest, {folder: f"{root}/{folder}" for folder in SPLITS})
        return {**record, "origin": "local folder", "sha256": None, "sha256_pinned": False, "archive_bytes": None,
                "modalities": dict.fromkeys(MODALITIES, GROUND_TRUTH), "counts": counts}
    archive = Archive(path, None, pin_key=written, downloaded=False)
    return {**record, "origin": "local archive", **extract_archives([archive], cfg["sha256"], dest)}


def extract_archives(archives: list[Archive], pins: dict[str, str], dest: Path) -> dict:
    """Verify the pinned ``archives``, extract them into ``dest`` and count the samples; returns
    their part of the provenance record. One archive holds the whole tree; two (train, val) are
    joined, and then every archive field of the record is a {train, val} mapping.

    A bad download (wrong checksum, corrupt) is removed so the next run fetches it again; an
    archive without MTAN's tree is kept (a re-run reuses it; delete it to download it again).
    """
    fields: dict[str, dict] = {key: {} for key in ("archive", "sha256", "sha256_pinned", "archive_bytes", "archive_root")}
    shown: dict[str, str] = {}
    for archive in archives:
        archive_kind(archive.path)  # an unsupported file type fails before it is hashed
        digest = verify_checksum(archive, pins.get(archive.pin_key))
        try:
            root = extract_mtan_archive(archive.path, dest, split=archive.split)
        except _CorruptArchive as exc:
            if archive.downloaded:
                archive.path.unlink()
            fix = ("removed, so the next run downloads it again" if archive.downloaded
                   else "replace it, or set data.nyuv2.local_path to null to download")
            raise DataError(f"{archive.path}: truncated or corrupt archive ({exc}); {fix}") from None
        values = {"archive": str(archive.path), "sha256": digest, "sha256_pinned": archive.pin_key in pins,
                  "archive_bytes": archive.path.stat().st_size, "archive_root": root}
        for key, value in values.items():
            fields[key][archive.split] = value
        if archive.split is None:
            shown.update({folder: f"{archive.path}:{root}{folder}" for folder in SPLITS})
        else:
            shown[archive.split] = f"{archive.path}:{root.rstrip('/') or '.'}"
    counts = count_samples(dest, shown)
    # One archive: plain values, as before; a split pair: {train: ..., val: ...} for each field.
    record: dict[str, Any] = {key: (values[None] if None in values else values) for key, values in fields.items()}
    for archive in archives:
        if archive.pin_key not in pins:
            digest = fields["sha256"][archive.split]
            print(f"sha256 of {archive.path}: {digest} (recorded in data/raw/SOURCE.json)\n"
                  f"data.nyuv2.sha256 has no entry for {archive.pin_key}: to verify it from now on, add to "
                  f"params.yaml data.nyuv2.sha256: {{{json.dumps(archive.pin_key)}: {digest}}}")
    return {**record, "modalities": dict.fromkeys(MODALITIES, GROUND_TRUTH), "counts": counts}


def verify_checksum(archive: Archive, expected: str | None) -> str:
    """The sha256 of ``archive``; DataError if it differs from ``expected`` (its pin, when it has one)."""
    digest = sha256_file(archive.path)
    if expected and digest != expected:
        pin = f"params data.nyuv2.sha256 entry {json.dumps(archive.pin_key)}"
        if archive.downloaded:
            archive.path.unlink()
            fix = "removed; if the archive changed upstream, update or remove that entry"
        else:
            fix = "check the file, or update that entry"
        raise DataError(f"{archive.path}: sha256 mismatch: expected {expected} ({pin}), got {digest}; {fix}")
    return digest


def _empty_folder(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


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
    file stays for the next run. SourceFailed for an HTTP client error, a web page, or when every
    attempt stopped early.
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
        raise SourceFailed(f"download failed after {attempts} attempts ({reason}); {part} keeps the "
                           f"{_size(part)} bytes received, and re-running `mbmt fetch` resumes it")
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
        raise SourceFailed(f"HTTP {exc.code} {exc.reason}") from None  # 4xx: retrying will not help
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"cannot reach the server: {getattr(exc, 'reason', exc)}") from None
    with response:
        if response.headers.get_content_type() == "text/html":  # e.g. Dropbox's preview page of a dl=0 link
            raise SourceFailed(f"{WEB_PAGE} (the server answered Content-Type text/html)")
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
    """"zip" or "tar", from the file name or else the file's first bytes; DataError for anything
    else, and for a web page saved under an archive's name (what a dl=0 Dropbox link gives)."""
    with open(path, "rb") as f:
        head = f.read(262)
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise DataError(f"{path}: {WEB_PAGE} (the file starts with {head.lstrip()[:15].decode(errors='replace')!r})")
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "tar"
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


def _find_split_prefix(names: list[str], split: str) -> str | None:
    """The path inside a one-split archive (or "") of the folder holding image/<i>.npy: the
    shortest one named ``split`` (``train/``, ``nyuv2/val/``) if any, else the shortest. The name
    decides when the archive holds both splits' folders, as MTAN's whole tree does."""
    prefixes = {match["prefix"] for name in names if (match := _SPLIT_MARK.match(name))}
    named = [prefix for prefix in prefixes if PurePosixPath(prefix).name == split]
    return min(named or prefixes, key=lambda prefix: (len(prefix), prefix)) if prefixes else None


def describe_contents(names: list[str], shown: int = 8) -> str:
    """What an archive holds, for a message when it is not what was expected: the number of
    files, its top-level entries (with the number of files under each folder), its first files."""
    if not names:
        return "it holds no files"
    top = Counter(name.split("/", 1)[0] + "/" if "/" in name else name for name in names)
    entries = [f"{entry} ({count} files)" if entry.endswith("/") else entry for entry, count in top.items()]
    more = f" and {len(entries) - shown} more" if len(entries) > shown else ""
    return (f"it holds {len(names)} files; top level: {', '.join(entries[:shown])}{more}; "
            f"first files: {_listing(names, {}, shown=5)}")


def extract_mtan_archive(archive: Path, dest: Path, split: str | None = None) -> str:
    """Extract the MTAN root inside ``archive`` into ``dest`` (train/, val/); returns its path in the archive.

    With ``split`` ("train" or "val"), ``archive`` holds that split's folders only (one half of a
    split pair), {image,label,depth,normal}/<i>.npy under any path, extracted into ``dest``/``split``.

    Safe by construction: only regular files named like a sample of the root are read, and each is
    written to ``dest``/<split>/<modality>/<i>.npy, a path made from the name pattern, never one
    taken from the archive. Members with absolute or '..' paths, links and special files are
    skipped, and listed; a sample stored as a link is an error (skipping it would drop the sample).
    """
    if split is None:
        member, into, hint = _MEMBER, dest, ARCHIVE_LAYOUT_HINT
    else:
        member, into, hint = _SPLIT_MEMBER, dest / split, f"the {split} archive of a split pair: {SPLIT_LAYOUT_HINT}"
    try:
        with _open_archive(archive) as (files, special, open_member):
            outside = sorted(name for name in [*files, *special] if _leaves_archive(name))
            files = [name for name in files if not _leaves_archive(name)]
            special = {name: what for name, what in special.items() if not _leaves_archive(name)}
            names = [*files, *special]
            prefix = _find_prefix(names) if split is None else _find_split_prefix(names, split)
            if prefix is None:
                ignored = (f"; {len(outside)} members with absolute or '..' paths were not considered: "
                           f"{_listing(outside, {})}" if outside else "")
                raise DataError(f"{archive}: does not contain MTAN's NYUv2 ({hint}): {describe_contents(names)}"
                                f"{ignored}")
            linked = sorted(name for name in special if (match := member.match(name)) and match["prefix"] == prefix)
            if linked:
                raise DataError(f"{archive}: {len(linked)} sample files are links ({_listing(linked, special)}), "
                                "which are never extracted, for safety; re-create the archive with the files "
                                "themselves (tar --dereference --hard-dereference; zip without --symlinks)")
            skipped = sorted([*outside, *special])
            if skipped:
                print(f"note: {archive}: skipped {len(skipped)} members that are links, special files or paths "
                      f"outside the archive (never extracted, for safety): {_listing(skipped, special)}")
            members = [(name, match["rel"]) for name in files
                       if (match := member.match(name)) and match["prefix"] == prefix]
            for name, rel in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                target = into / rel
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

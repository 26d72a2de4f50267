"""Get the raw dataset into data/raw/ in MTAN's layout, and record where it came from.

Sources (params ``data``, as mbmt.data.settings.DataSettings):

- ``nyuv2`` with ``nyuv2.local_path: null``: the first of ``nyuv2.sources`` that gives MTAN's
  NYUv2, tried in order. A source is one archive URL (MTAN's tree anywhere inside it) or a
  ``{train: URL, val: URL}`` pair of archives, one per split, joined into one MTAN root. A source
  that fails (HTTP error, unreachable, a web page, a corrupt archive, no MTAN tree inside, a
  checksum mismatch) is recorded with its reason and the next is tried; when all fail, one
  DataError lists them. Partial files live in data/downloads/ (not a stage output, so a failed
  or killed stage resumes them: mbmt.data.transfer); an archive whose URL has an entry in
  ``nyuv2.sha256`` is verified, then MTAN's tree is extracted from it (mbmt.data.archives). A
  source may also be a dataset repository on the Hugging Face Hub at a pinned revision
  (``{hub, revision, shards, shape}``), whose Parquet files are converted into MTAN's layout,
  every array checked (mbmt.data.hub_mirror).
- ``nyuv2`` with ``nyuv2.local_path``: an archive (.zip, .tar, .tar.gz/.tgz) or an extracted folder
  (the MTAN root, or a folder holding ``nyuv2/``) that the user already has.
- ``synthetic``: the built-in scene generator, rendered into the same layout so it takes the same
  preprocess path as the real archive (mbmt.data.synthetic.mtan).

data/raw/ is built in a temporary sibling directory and renamed at the end: it is either
complete, with SOURCE.json describing it, or untouched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbmt import __version__
from mbmt import hub
from mbmt.data import hub_mirror, mtan_layout
from mbmt.data.archives import CorruptArchive, archive_kind, copy_mtan_folder, extract_mtan_archive
from mbmt.data.hdf5 import GROUND_TRUTH, MODALITIES, RENDERED
from mbmt.config import thaw
from mbmt.data.settings import DataSettings, NyuSources, Source, SyntheticScenes
from mbmt.data.transfer import DOWNLOAD_ATTEMPTS  # noqa: F401  (how often one source is tried, named here too)
from mbmt.data.transfer import DownloadFailed, download, download_name
from mbmt.errors import DataError
from mbmt.io import atomic_path, sha256_file, write_json
from mbmt.paths import DOWNLOAD_DIR, RAW_DIR

SOURCE_FILE = "SOURCE.json"  # provenance of data/raw, read by preprocess
SPLITS = tuple(mtan_layout.SPLIT_FOLDERS.values())  # MTAN's split folders, the keys of a split pair


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


def fetch(data: DataSettings, *, raw_dir: Path = RAW_DIR, download_dir: Path = DOWNLOAD_DIR) -> dict:
    """Fill ``raw_dir`` (an MTAN root) as ``data`` says and return its SOURCE.json record."""
    with atomic_path(raw_dir, directory=True) as tmp:
        if data.source == "synthetic":
            record = render_synthetic(data.synthetic, data.height, data.width, tmp)
            record["counts"] = count_samples(tmp, {folder: f"synthetic:{folder}" for folder in SPLITS})
        else:
            record = fetch_nyuv2(data.nyuv2, tmp, download_dir)
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

def render_synthetic(scenes: SyntheticScenes, height: int, width: int, dest: Path) -> dict:
    """Render the synthetic train and test ``scenes`` at ``height`` x ``width`` into ``dest`` in
    MTAN's layout; returns the provenance record."""
    from mbmt.data.synthetic.mtan import write_split

    for split in ("train", "test"):
        # Fetch starts the DAG, so nothing else competes for the cores; the output is identical
        # for any worker count.
        write_split(mtan_layout.split_dir(dest, split), split, scenes.size(split), height, width, scenes.seed,
                    workers=os.cpu_count() or 1)
    return {
        "source": "synthetic", "origin": "generator", "generator": "mbmt.data.synthetic.generate",
        "seed": scenes.seed, "height": height, "width": width,
        "modalities": dict.fromkeys(MODALITIES, RENDERED),
    }


def fetch_nyuv2(nyuv2: NyuSources, dest: Path, download_dir: Path = DOWNLOAD_DIR) -> dict:
    """Copy ``nyuv2.local_path`` into ``dest``, or else the first of ``nyuv2.sources`` that gives
    MTAN's NYUv2; returns the provenance record, sample counts included."""
    if nyuv2.local_path:
        return copy_local_nyuv2(nyuv2.local_path, nyuv2.sha256, dest)
    failed: list[dict] = []
    for number, source in enumerate(nyuv2.sources, 1):
        try:
            record = download_source(source, nyuv2.sha256, dest, download_dir)
        except SourceFailed as exc:
            failed.append({"source": thaw(source), "reason": str(exc)})
            if number < len(nyuv2.sources):
                print(f"note: {describe_source(source)}: {exc}; trying the next source")
            _empty_folder(dest)  # what a failed source extracted must not mix with the next one's files
            continue
        return {**record, "failed_sources": failed}
    raise DataError(all_sources_failed(failed, download_dir))


def describe_source(source: Source) -> str:
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


def download_source(source: Source, pins: Mapping[str, str], dest: Path, download_dir: Path) -> dict:
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
            path = download(url, download_dir / download_name(url))
            _check_is_archive(path)
        except (DownloadFailed, SourceFailed) as exc:
            raise SourceFailed(f"{split} archive: {exc}" if split else str(exc)) from None
        archives.append(Archive(path, split, pin_key=url, downloaded=True))
    try:
        record = extract_archives(archives, pins, dest)
    except DataError as exc:  # the message names the archive
        raise SourceFailed(str(exc)) from None
    return {"source": "nyuv2", "origin": "download", "url": thaw(source), "local_path": None, **record}


def _check_is_archive(path: Path) -> None:
    """SourceFailed, removing the file, unless the download ``path`` is a zip or tar archive (a
    server may answer a dead or dl=0 link with a web page and no text/html Content-Type)."""
    try:
        archive_kind(path)
    except DataError as exc:
        path.unlink()
        raise SourceFailed(f"{exc}; removed") from None


def copy_local_nyuv2(written: str, pins: Mapping[str, str], dest: Path) -> dict:
    """Copy ``written``, params data.nyuv2.local_path (an archive or an extracted folder), into
    ``dest``; ``pins`` are data.nyuv2.sha256."""
    path = Path(written).expanduser()
    record = {"source": "nyuv2", "origin": None, "url": None, "local_path": str(path.resolve()),
              "failed_sources": []}
    if not path.exists():
        raise DataError(f"params data.nyuv2.local_path: {path} does not exist; point it at MTAN's nyuv2.zip "
                        "or its extracted folder, or set it to null to download from data.nyuv2.sources")
    if path.is_dir():
        if written in pins:
            print(f"note: data.nyuv2.sha256 has an entry for {written}, a folder; checksums apply to archives only")
        root = copy_mtan_folder(path, dest)
        counts = count_samples(dest, {folder: f"{root}/{folder}" for folder in SPLITS})
        return {**record, "origin": "local folder", "sha256": None, "sha256_pinned": False, "archive_bytes": None,
                "modalities": dict.fromkeys(MODALITIES, GROUND_TRUTH), "counts": counts}
    archive = Archive(path, None, pin_key=written, downloaded=False)
    return {**record, "origin": "local archive", **extract_archives([archive], pins, dest)}


def extract_archives(archives: list[Archive], pins: Mapping[str, str], dest: Path) -> dict:
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
        except CorruptArchive as exc:
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

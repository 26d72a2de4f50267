"""Resumable HTTP download of one file, with the checks that tell a failed transfer from a bad source.

A partial file lives beside its destination as ``<name>.part`` (with the validators of the
response it came from in ``<name>.part.json``), so a failed or killed run resumes it with an HTTP
``Range`` request; ``If-Range`` makes a file that changed on the server restart from zero instead
of being spliced. Failures that retrying cannot fix (an HTTP client error, a web page instead of
the file) raise DownloadFailed at once; transfers that stop early are retried, then DownloadFailed
says how many bytes the partial file keeps.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from mbmt import __version__
from mbmt.data.archives import WEB_PAGE

DOWNLOAD_ATTEMPTS = 3  # per source and `mbmt fetch`; a later run resumes from where these stopped
RETRY_DELAY_S = 2.0  # before retrying an attempt that received nothing (times the attempt number)
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20


class DownloadFailed(Exception):
    """The file could not be had from this URL; the message says why, and what became of the partial file."""


class _Interrupted(Exception):
    """One download attempt stopped early; the partial file is kept for the next attempt."""


def download_name(url: str) -> str:
    """A file name for ``url`` in a download folder: its basename, prefixed with a hash of the URL
    so a changed URL never resumes another URL's partial file."""
    name = Path(urlsplit(url).path).name or "archive"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def download(url: str, dest: Path, *, attempts: int = DOWNLOAD_ATTEMPTS) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest``.part; returns ``dest``.

    A complete ``dest`` from an earlier run is reused. Up to ``attempts`` requests are made; a
    transfer that stops early is resumed with ``Range`` (and ``If-Range``, so a file that changed
    on the server restarts from zero instead of being spliced). If all attempts fail, the partial
    file stays for the next run. DownloadFailed for an HTTP client error, a web page, or when every
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
        raise DownloadFailed(f"download failed after {attempts} attempts ({reason}); {part} keeps the "
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
        raise DownloadFailed(f"HTTP {exc.code} {exc.reason}") from None  # 4xx: retrying will not help
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"cannot reach the server: {getattr(exc, 'reason', exc)}") from None
    with response:
        if response.headers.get_content_type() == "text/html":  # e.g. Dropbox's preview page of a dl=0 link
            raise DownloadFailed(f"{WEB_PAGE} (the server answered Content-Type text/html)")
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

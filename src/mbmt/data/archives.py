"""Archives and folders that hold MTAN's NYUv2: what kind of file an archive is, where MTAN's tree
sits inside it, and extracting or copying just that tree.

MTAN's tree is ``{train,val}/{image,label,depth,normal}/<i>.npy`` under any path in an archive (the
shortest such root is taken); one half of a split pair holds one split's folders,
``{image,label,depth,normal}/<i>.npy``. Extraction is safe by construction: only regular files
named like a sample are read, each written to a path made from the name pattern; absolute or
'..' paths, links and special files are never extracted.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from mbmt.data import mtan_layout
from mbmt.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
COPY_BYTES = 1 << 20  # the buffer of each member's copy

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


class CorruptArchive(Exception):
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
                    shutil.copyfileobj(src, out, COPY_BYTES)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise CorruptArchive(str(exc) or type(exc).__name__) from None
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

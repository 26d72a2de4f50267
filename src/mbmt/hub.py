"""One file from the Hugging Face Hub, through ``huggingface_hub``: shared by the ImageNet weights
(mbmt.models.pretrained) and the NYUv2 mirror (mbmt.data.hub_mirror).

The client does the work: its cache (``HF_HOME``, ``HF_HUB_CACHE``), ``HF_ENDPOINT``, ``HF_TOKEN``,
proxies, ``HF_HUB_OFFLINE``, and resuming a cut transfer from its ``.incomplete`` file. What this
module adds: the client's many exceptions sorted into the two a caller acts on (:class:`Missing`:
the repository has no such file, so a caller may try another; :class:`Unavailable`: the file may
exist but cannot be had now), each with a one-line reason, and the check of an LFS file against
the sha256 the Hub announced for it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mbmt.io import sha256_file

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Missing(Exception):
    """The repository (at that revision) has no such file; the message says which."""


class Unavailable(Exception):
    """The file could not be had now (offline and not cached, unreachable, an HTTP error, a
    checksum mismatch); the message says why."""


def describe(repo_id: str, repo_type: str = "model") -> str:
    """How messages name a repository: the endpoint and the repository."""
    from huggingface_hub import constants

    kind = "dataset repository" if repo_type == "dataset" else "repository"
    return f"the Hugging Face Hub ({constants.ENDPOINT}, {kind} {repo_id})"


def download(repo_id: str, filename: str, *, revision: str | None = None, repo_type: str = "model") -> Path:
    """The cached path of ``filename`` (``<cache>/snapshots/<commit>/<filename>``), downloaded
    if needed and verified; :class:`Missing` or :class:`Unavailable`, saying why."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, repo_type=repo_type, library_name="mbmt"))
    except RemoteEntryNotFoundError:
        raise Missing(f"no {filename}") from None
    except LocalEntryNotFoundError as exc:  # before OSError: it is one
        offline = "offline (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else "unreachable"
        raise Unavailable(f"{offline} and {filename} is not in the Hub cache {constants.HF_HUB_CACHE} "
                          f"({first_line(exc)})") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise Unavailable(f"{filename}: {first_line(exc)}") from None
    except Exception as exc:  # the client's transport errors (httpx) after its own retries and resumes
        raise Unavailable(f"{filename}: {type(exc).__name__}: {first_line(exc)}") from None
    verify_blob(path, filename)
    return path


def verify_blob(path: Path, what: str) -> None:
    """The Hub names an LFS file's blob in its cache after the file's sha256 (its ETag): check it.
    A mismatching blob is removed from the cache, so that the next try downloads it again."""
    blob = path.resolve()
    if not _SHA256.fullmatch(blob.name):
        return  # a small file kept in git: its ETag is a git hash, nothing to compare here
    digest = sha256_file(blob)
    if digest != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise Unavailable(f"{what}: checksum mismatch (the Hub announces sha256 {blob.name}, the downloaded file "
                          f"has {digest}); the file was removed from the cache, run again to download it anew")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

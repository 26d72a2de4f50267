"""A stand-in for the Hugging Face Hub on 127.0.0.1, speaking the part of its protocol that
``huggingface_hub.hf_hub_download`` uses (HEAD, then GET with Range, of
``/<repo>/resolve/<revision>/<file>``, ``/datasets/<repo>/...`` for a dataset), so the real download
code of the weights stage and of the NYUv2 mirror runs against it through ``HF_ENDPOINT``. Files
are what a test puts in ``repos``; faults are switches."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

# A model's files at /<repo>/resolve/..., a dataset's at /datasets/<repo>/resolve/...
_RESOLVE = re.compile(r"^/(?:datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")


@dataclass
class HubServer:
    """``repos``: {repo id: {file name: bytes}}. ``announce``: {file name: sha256 to announce instead
    of the real one} (a checksum mismatch); ``cut``: {file name: [bytes of the body sent before the
    connection is closed, for each of the next responses]} (truncated transfers; the list is
    consumed). ``requests``: (method, path) of every request; ``ranges``: (path, Range header) of every GET
that asked for a range (a resumed transfer)."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    announce: dict[str, str] = field(default_factory=dict)
    cut: dict[str, list[int]] = field(default_factory=dict)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    requests: list[tuple[str, str]] = field(default_factory=list)
    ranges: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the tests read `requests`
                pass

            def do_HEAD(self):
                hub.serve(self, body=False)

            def do_GET(self):
                hub.serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((handler.command, handler.path))
        if body and handler.headers.get("Range"):
            self.ranges.append((handler.path, handler.headers["Range"]))
        match = _RESOLVE.match(handler.path.split("?")[0])
        repo = match and self.repos.get(unquote(match["repo"]))
        if repo is None:
            return self._error(handler, "RepoNotFound", "Repository not found")
        name = unquote(match["file"])
        if name not in repo:
            return self._error(handler, "EntryNotFound", f"{name} does not exist on {match['revision']}")
        data = repo[name]
        start = 0
        requested = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if requested and int(requested[1]) < len(data):
            start = int(requested[1])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        # As the Hub answers for a file stored with LFS: the commit, and the sha256 as the ETag.
        handler.send_header("X-Repo-Commit", self.commit)
        handler.send_header("ETag", f'"{self.announce.get(name, hashlib.sha256(data).hexdigest())}"')
        handler.send_header("Content-Length", str(len(data) - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if body:
            payload = data[start:]
            if self.cut.get(name):
                payload = payload[: self.cut[name].pop(0)]
                handler.close_connection = True
            handler.wfile.write(payload)

    def _error(self, handler: BaseHTTPRequestHandler, code: str, message: str) -> None:
        handler.send_response(404)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        if code == "EntryNotFound":  # the repository exists: the Hub names its commit
            handler.send_header("X-Repo-Commit", self.commit)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


def timm_weights(model_name: str, seed: int = 0) -> bytes:
    """A timm-format safetensors file of ``model_name``, randomly initialised with ``seed``: the
    bytes a Hub repository of timm would serve, as far as loading goes."""
    import safetensors.torch
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(model_name, pretrained=False)
    return safetensors.torch.save({key: value.contiguous() for key, value in model.state_dict().items()})


def nested(array):
    """``array`` (rows, *dims) as one Parquet column of nested lists, as the Hub's datasets library
    stores an ArrayXD feature."""
    import numpy as np
    import pyarrow as pa

    values = pa.array(np.ascontiguousarray(array).reshape(-1))
    for size in reversed(array.shape[1:]):
        values = pa.ListArray.from_arrays(pa.array(np.arange(0, len(values) + 1, size, dtype=np.int32)), values)
    return values


def mirror_parquet(samples: list[dict], **columns) -> bytes:
    """A Parquet file in the schema of the NYUv2 mirror on the Hub (image float32 [3, H, W],
    segmentation int64 [H, W], depth float32 [1, H, W], normal float32 [3, H, W], noise float32
    [1, H, W]) holding canonical ``samples`` (mbmt.data.hdf5); ``columns`` replaces a column's
    pyarrow array (a wrong type or shape)."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    stack = {name: np.stack([sample[name] for sample in samples]) for name in ("image", "semantic", "depth", "normal")}
    arrays = {
        "image": nested(stack["image"].transpose(0, 3, 1, 2).astype(np.float32)),
        "segmentation": nested(stack["semantic"].astype(np.int64)),
        "depth": nested(stack["depth"][:, None].astype(np.float32)),
        "normal": nested(stack["normal"].transpose(0, 3, 1, 2).astype(np.float32)),
        "noise": nested(np.zeros_like(stack["depth"][:, None], dtype=np.float32)),
        **columns,
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(arrays), buffer)
    return buffer.getvalue()

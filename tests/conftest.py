"""Shared fixtures. Tests run on CPU, offline, at tiny sizes."""

from __future__ import annotations

import os

# Before timm/huggingface_hub are imported anywhere: a stray hub download would retry for ~50 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny tensors on 2 cores: one thread per process is faster and immune to OpenMP spin-waits when
# processes (DataLoader workers, DDP ranks, Snakemake jobs) share the cores. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from provided import missing, require_module

REPO = Path(__file__).resolve().parents[1]
TINY_PRESET = REPO / "tests" / "tiny.yaml"
# The 10 real NYUv2 test frames shipped beside the project (../shared), or MBMT_REAL_IMAGES.
REAL_IMAGES = Path(os.environ.get("MBMT_REAL_IMAGES", REPO.parent / "shared" / "data" / "nyuv2-test10"))
SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).is_file()), None)


# A slow test's time limit (pytest-timeout), where it sets none of its own and none is given on the
# command line or in PYTEST_TIMEOUT; the quick tier's is `timeout` in pyproject.toml. The tier's 33
# tests take about 35 minutes in all; a module's fixture that runs the whole tiny DAG counts toward
# the first test that uses it.
SLOW_TIMEOUT = 1800


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is not installed: the tests' time limits need it (pip install -e '.[dev]')")


def pytest_collection_modifyitems(config, items):
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture
def tiny_params() -> dict:
    """params.yaml with the tiny test preset merged over it, validated."""
    from mbmt.config import load_params

    return load_params([REPO / "params.yaml", TINY_PRESET])


@pytest.fixture
def real_images() -> Path:
    if not (REAL_IMAGES / "0_rgb.png").is_file():
        pytest.skip(f"the real NYUv2 test frames are not at {REAL_IMAGES} (set MBMT_REAL_IMAGES)")
    return REAL_IMAGES


@pytest.fixture
def make_mtan_root():
    """Factory: ``make(root, counts={"train": 3, "test": 2}, height=64, width=64, seed=0)`` writes random
    valid samples (some depth and normals missing) in MTAN's .npy layout under ``root`` and returns
    them as {split: [canonical sample, ...]}."""
    import numpy as np

    from mbmt.data import mtan_layout

    def make(root, counts=None, height=64, width=64, seed=0) -> dict:
        rng = np.random.default_rng(seed)
        samples = {}
        for split, count in (counts or {"train": 3, "test": 2}).items():
            samples[split] = []
            for index in range(count):
                normal = rng.normal(size=(height, width, 3))
                normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
                missing = rng.random((height, width)) < 0.1
                sample = {
                    "image": rng.random((height, width, 3)).astype(np.float32),
                    "semantic": rng.integers(-1, 13, (height, width)),
                    "depth": np.where(missing, 0, rng.uniform(0.5, 10, (height, width))).astype(np.float32),
                    "normal": np.where(missing[..., None], 0, normal).astype(np.float32),
                }
                mtan_layout.write_sample(mtan_layout.split_dir(root, split), index, sample)
                samples[split].append(sample)
        return samples
    return make


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project directory (cwd) holding params.yaml and the tiny preset merged into it, and
    the lock `mbmt dag` reads the stages' result-affecting packages from."""
    import yaml

    from mbmt.config import load_params
    from mbmt.environment import BASE_LOCK

    params = load_params([REPO / "params.yaml", TINY_PRESET])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / BASE_LOCK).parent.mkdir()
    shutil.copy(REPO / BASE_LOCK, tmp_path / BASE_LOCK)
    shutil.copy(TINY_PRESET, tmp_path / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def processed_data():
    """Factory: ``make(root=".")`` writes data/processed/{train,test}.h5 under ``root`` from its
    params.yaml (data.synthetic sizes and seed, data.height/width), with the synthetic scene generator."""
    from mbmt.config import load_params
    from mbmt.data.hdf5 import MODALITIES, RENDERED, SplitWriter
    from mbmt.data.synthetic import generate

    def make(root: Path | str = ".") -> None:
        root = Path(root)
        params = load_params([root / "params.yaml"])
        synthetic, height, width = params["data"]["synthetic"], params["data"]["height"], params["data"]["width"]
        for split in ("train", "test"):
            count = synthetic[f"{split}_size"]
            with SplitWriter(root / "data" / "processed" / f"{split}.h5", count, height, width, split=split,
                             source="synthetic", modalities=dict.fromkeys(MODALITIES, RENDERED)) as writer:
                for index, sample in enumerate(generate(count, height, width, synthetic["seed"], split=split)):
                    writer.add(sample, f"synthetic {split}[{index}]")
    return make


@pytest.fixture
def sshd(tmp_path):
    """An SSH server on 127.0.0.1 for this user, key-authenticated; yields (port, client key, env of the clients)."""
    if SSHD is None:
        missing("sshd", "OpenSSH's server is not installed on this machine (apt-get install openssh-server)")
    require_module("dvc_ssh", "dvc-ssh", "the package is not installed (pip install -e '.[dev]' or '.[ssh]')")
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True, timeout=60)
    shutil.copy(keys / "client_key.pub", keys / "authorized_keys")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = keys / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
                      f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'sshd.pid'}\n"
                      "PasswordAuthentication no\nStrictModes no\nUsePAM no\n"
                      "Subsystem sftp internal-sftp\n")  # DVC talks SFTP
    log = keys / "sshd.log"
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            message = log.read_text().strip()
            if "privilege separation directory" in message:  # as root, sshd wants its system directory
                missing("sshd", f"it cannot start here ({message}; as root: mkdir -p /run/sshd)")
            pytest.fail(f"sshd did not listen on port {port}: {message}")
        # The clients trust this host key alone: a known_hosts in a home of their own.
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'host_key.pub').read_text()}")
        yield port, keys / "client_key", {"HOME": str(home)}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on 127.0.0.1 (a free port) with one empty bucket, "mbmt"; yields (endpoint URL,
    credentials {name: value} it accepts, env of the clients: no ~/.aws files of this machine)."""
    for module in ("moto", "flask"):
        require_module(module, "moto's S3 server", "moto[server] is not installed (pip install -e '.[dev]')")
    require_module("dvc_s3", "dvc-s3", "the package is not installed (pip install -e '.[dev]' or '.[s3]')")
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        credentials = {"access_key_id": "mbmt-test", "secret_access_key": "mbmt-test-secret"}
        env = {"AWS_CONFIG_FILE": str(tmp_path / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials")}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=credentials["access_key_id"],
                     aws_secret_access_key=credentials["secret_access_key"]).create_bucket(Bucket="mbmt")
        yield endpoint, credentials, env
    finally:
        server.stop()


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """huggingface_hub as a fresh machine has it: online, an empty cache; returns a function that
    points it at a HubServer (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def point_at(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")

    point_at("http://127.0.0.1:9")  # the discard port: nothing answers unless a test serves the Hub
    return point_at

"""The shared remote cache: docs/workflow.md's one command configures a local, SSH or S3 remote,
and (where an SSH server can be started) outputs round-trip through an SSH remote on 127.0.0.1.

The local-directory round trip of a whole pipeline run is in test_workflow.py.
"""

from __future__ import annotations

import getpass
import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_workflow_project import commit, run

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).is_file()), None)


@pytest.mark.parametrize("url", ["/mnt/shared/mbmt-cache", "ssh://me@cluster.example.org/srv/mbmt-cache",
                                 "s3://my-bucket/mbmt-cache"])
def test_one_command_sets_up_the_remote(tmp_path, url):
    from dvc.repo import Repo

    run(["dvc", "init", "--no-scm", "--quiet"], tmp_path)
    run(["dvc", "remote", "add", "--default", "shared", url], tmp_path)  # the documented command
    with Repo(str(tmp_path)) as repo:
        assert repo.config["core"]["remote"] == "shared"
        assert repo.config["remote"]["shared"]["url"] == url


@pytest.fixture
def sshd(tmp_path):
    """An SSH server on 127.0.0.1 for this user, key-authenticated; yields (port, client key, env of the clients)."""
    if SSHD is None:
        pytest.skip("sshd is not installed on this machine (apt-get install openssh-server to run this test)")
    if importlib.util.find_spec("dvc_ssh") is None:
        pytest.skip("dvc-ssh is not installed (pip install -e '.[ssh]')")
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "client_key.pub", keys / "authorized_keys")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = keys / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
                      f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'sshd.pid'}\n"
                      "PasswordAuthentication no\nStrictModes no\nUsePAM no\n")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"sshd did not listen on port {port}")
        # The clients trust this host key alone: a known_hosts in a home of their own.
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'host_key.pub').read_text()}")
        yield port, keys / "client_key", {"HOME": str(home)}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_ssh_remote_round_trip(tmp_path, sshd):
    """A stage's outputs pushed over SSH come back byte for byte in a fresh clone."""
    port, key, env = sshd
    project = tmp_path / "project"
    project.mkdir()
    run(["git", "init", "-q", "-b", "main"], project)
    run(["dvc", "init", "-q"], project)
    (project / "params.yaml").write_text("size: 3\n")
    run(["dvc", "stage", "add", "-n", "make", "-p", "size", "-o", "out",
         "mkdir -p out && head -c 100000 /dev/urandom > out/data.bin"], project)
    run(["dvc", "repro", "--quiet"], project)
    run(["dvc", "remote", "add", "--default", "shared", f"ssh://{getpass.getuser()}@127.0.0.1:{port}{tmp_path / 'remote'}"], project)
    run(["dvc", "remote", "modify", "--local", "shared", "keyfile", str(key)], project)
    commit(project, "ssh remote")
    run(["dvc", "push", "--quiet"], project, env=env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")  # credentials stay out of git
    run(["dvc", "pull", "--quiet"], clone, env=env)
    assert (clone / "out" / "data.bin").read_bytes() == (project / "out" / "data.bin").read_bytes()
    assert run(["dvc", "status"], clone).stdout.strip() == "Data and pipelines are up to date."

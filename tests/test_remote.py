"""The shared remote cache: docs/workflow.md's one command configures a local, SSH or S3 remote.

The round trip of a whole pipeline run through a local-directory remote and an SSH remote on
127.0.0.1 (the `sshd` fixture of conftest.py) is in test_workflow.py.
"""

from __future__ import annotations

import pytest
from test_workflow_project import run


@pytest.mark.parametrize("url", ["/mnt/shared/mbmt-cache", "ssh://me@cluster.example.org/srv/mbmt-cache",
                                 "s3://my-bucket/mbmt-cache"])
def test_one_command_sets_up_the_remote(tmp_path, url):
    from dvc.repo import Repo

    run(["dvc", "init", "--no-scm", "--quiet"], tmp_path)
    run(["dvc", "remote", "add", "--default", "shared", url], tmp_path)  # the documented command
    with Repo(str(tmp_path)) as repo:
        assert repo.config["core"]["remote"] == "shared"
        assert repo.config["remote"]["shared"]["url"] == url

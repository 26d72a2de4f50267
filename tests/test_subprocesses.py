"""The tests' time limits (tests/subprocesses.py, pytest-timeout): a hung command fails its test
within the limit, with the end of its output, and nothing it started is left running."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import subprocesses

TESTS = Path(__file__).resolve().parent
# A command that hangs, with a child of its own that would outlive it (as a Snakemake job would);
# the child's pid goes to a file and both say they started.
HANGS = "sleep 300 & echo $! > {pid}; echo started; echo to stderr >&2; sleep 300"


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (and been reaped by init, its parent once its own parent died) within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def child_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not path.is_file() or not path.read_text().strip():
        assert time.monotonic() < deadline, "the command did not start its child"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_command_past_its_limit_fails_the_test_and_its_process_group_is_killed(tmp_path):
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failed:
        subprocesses.run(["bash", "-c", HANGS.format(pid=tmp_path / "pid")], timeout=2)
    assert time.monotonic() - start < 30
    message = str(failed.value)
    assert message.startswith("`bash -c sleep 300 & ") and "did not end in 2 s; killed with its process group" in message
    assert "started" in message and "to stderr" in message  # the end of what it wrote
    assert gone(child_pid(tmp_path / "pid"))


def test_a_command_within_its_limit_gives_what_subprocess_run_gives(tmp_path):
    result = subprocesses.run(["bash", "-c", "echo out; echo err >&2; exit 3"], timeout=60, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_pytest_timeout_fails_a_hung_test_and_kills_its_command(tmp_path):
    """A test whose command would run past pytest-timeout's limit (here the test's own 3 s, the
    command's 300 s): the test fails at 3 s, the command's whole group is killed, and the end of
    its output is shown with the failure; the run goes on to the next test."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_hung.py").write_text(textwrap.dedent(f"""
        import pytest
        import subprocesses

        @pytest.mark.timeout(3)
        def test_hung():
            subprocesses.run(["bash", "-c", {HANGS.format(pid=tmp_path / "pid")!r}], timeout=300)

        def test_next():
            pass
    """))
    start = time.monotonic()
    result = subprocesses.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hung.py"],
                              timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert time.monotonic() - start < 60, result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "Failed: Timeout (>3.0s) from pytest-timeout." in result.stdout
    assert "was killed (the test was interrupted). The end of its output:\nstarted" in result.stdout
    assert gone(child_pid(tmp_path / "pid"))

"""The commands the tests start, each with a time limit (no tests here).

A hung `snakemake`, `dvc` or training must fail its test, not block the run until CI's own limit.
Each command runs in a process group of its own (a session), so that the front end and every job
it started can be killed together; when its time is up the group is killed with SIGKILL and the
test fails with the end of what the command wrote. When the test itself is interrupted while it
waits (pytest-timeout's alarm, Ctrl-C), the group is killed too and the end of the output printed
(pytest shows it with the failure), so nothing of a test outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable

import pytest

TAIL = 4000  # characters of a command's output shown when it is stopped


def start(args: list[str], timeout: float, **popen) -> subprocess.Popen:
    """``subprocess.Popen(args, **popen)`` in a process group of its own; ``stop`` ends the group.
    ``timeout`` is what ``wait`` later allows it (kept on the process, for the message)."""
    process = subprocess.Popen(args, start_new_session=True, **popen)
    process.time_limit = timeout
    return process


def stop(process: subprocess.Popen) -> None:
    """SIGKILL the process group of ``process`` (started by ``start``) and reap the process."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass
    process.wait()


def wait(process: subprocess.Popen, output: Callable[[], str] = lambda: "", timeout: float | None = None) -> int:
    """The exit status of ``process`` (started by ``start``) once it ends, within ``timeout``
    seconds (default: the limit given to ``start``); otherwise its group is killed and the test
    fails, with the end of ``output()``."""
    timeout = process.time_limit if timeout is None else timeout
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail(f"`{command_line(process.args)}` did not end in {timeout:g} s; killed with its process group. "
                    f"The end of its output:\n{output()[-TAIL:]}", pytrace=False)
    except BaseException:
        stop(process)
        print(f"`{command_line(process.args)}` was killed (the test was interrupted). The end of its output:\n"
              f"{output()[-TAIL:]}", file=sys.stderr)
        raise


def run(args: list[str], timeout: float, cwd=None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """What ``subprocess.run(args, capture_output=True, text=True, timeout=timeout)`` gives, but the
    whole process group is killed at the limit, and the test then fails with the end of the output."""
    # Files, not pipes: what the command wrote before it hung is there to show.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        def text(file) -> str:
            file.seek(0)
            return file.read().decode(errors="replace")

        process = start(args, timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        returncode = wait(process, lambda: f"{text(out)[-TAIL:]}\n--- stderr:\n{text(err)}")
        return subprocess.CompletedProcess(args, returncode, text(out), text(err))


def command_line(args) -> str:
    return args if isinstance(args, str) else " ".join(map(str, args))

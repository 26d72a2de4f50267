"""A barrier for tests/test_locking.py (no tests here): on PYTHONPATH, this makes an `mbmt` stage
command that takes the output lock named MBMT_TEST_HOLD_LOCK (mbmt.locking) hold it, before it goes
on, until the file named by MBMT_TEST_RELEASE exists.

The locking tests start a front end with it and check a second front end while the first one
provably holds the lock, then create the file: the outcome no longer depends on whether a training
outlasts the second front end's start-up. Python imports `sitecustomize` at start-up from its path;
in other processes (snakemake, dvc, bash's children other than `mbmt`) this does nothing.
"""

import os
import sys
import time
from pathlib import Path

if os.environ.get("MBMT_TEST_HOLD_LOCK") and sys.argv and Path(sys.argv[0]).name == "mbmt":
    from mbmt.locking import OutputLock

    _acquire = OutputLock.acquire

    def _acquire_and_hold(self) -> None:
        _acquire(self)  # the lock, with its holder's pid and command written, as always
        if self.path.stem != os.environ["MBMT_TEST_HOLD_LOCK"]:
            return
        release = Path(os.environ["MBMT_TEST_RELEASE"])
        deadline = time.monotonic() + 600  # the test gave up: let the run end
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    OutputLock.acquire = _acquire_and_hold

"""Headless Chromium for the tests (no tests here), driven with the DevTools protocol over a pipe.

`--remote-debugging-pipe` makes Chromium read protocol commands from file descriptor 3 and write
replies and events to 4, each a JSON message ended by a NUL byte: a real browser, with nothing to
install beyond Debian's `chromium` package (.ci/run installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

TIMEOUT = 60.0  # seconds for any one reply


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are above 4, so that moving them onto 3 and 4 cannot overwrite one."""
    ends = os.pipe()
    moved = tuple(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 10) for end in ends)
    for end in ends:
        os.close(end)
    return moved


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: load a page, evaluate script in it, collect its script errors and take screenshots."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900):
        read_commands, self._commands = _pipe()
        self._replies, write_replies = _pipe()
        self._process = subprocess.Popen(
            [executable(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--remote-debugging-pipe"],
            # Chromium's ends become its fds 3 and 4 (dup2 leaves them open across exec); every
            # other descriptor of ours is close-on-exec.
            preexec_fn=lambda: (os.dup2(read_commands, 3), os.dup2(write_replies, 4)), close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(read_commands)
        os.close(write_replies)
        self._buffer = b""
        self._next_id = 0
        self._session = None
        self.errors: list[str] = []  # uncaught exceptions, console.error calls, error log entries
        self.loaded = False
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._session = None
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        finally:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            os.close(self._commands)
            os.close(self._replies)

    def send(self, method: str, **params) -> dict:
        """Send one command; returns its result once the reply comes (events meanwhile are recorded)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(time.monotonic() + TIMEOUT)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._record(reply)

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event."""
        self.loaded = False
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + TIMEOUT
        while not self.loaded:
            self._record(self._receive(deadline))

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0):
        """Evaluate ``expression`` until it is truthy (the page renders asynchronously); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def _record(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append((details.get("exception") or {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({self._process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

"""tests/provided.py: a tool that CI provides, missing, skips a test on a developer's machine and
fails it under CI=true, naming the tool."""

from __future__ import annotations

import pytest
from provided import missing, require_module


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_tool_fails_the_test_naming_it(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"^sshd is missing: not installed \(CI=true: "):
        missing("sshd", "not installed")
    with pytest.raises(pytest.fail.Exception, match=r"^no-such-package is missing: pip install it"):
        require_module("mbmt_no_such_module", "no-such-package", "pip install it")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_elsewhere_it_is_skipped_with_the_reason(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"^Chromium is missing: apt-get install chromium$"):
        missing("Chromium", "apt-get install chromium")
    require_module("yaml", "PyYAML", "installed: nothing happens")

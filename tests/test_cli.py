"""The `mbmt` command: every stage explains itself, and errors are one clear line."""

from __future__ import annotations

import pytest

from mbmt.cli import STAGES, main


def test_top_level_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage in out


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as info:
        main([stage, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mbmt {stage}")
    assert "--params" in out


def test_bad_params_is_one_line_error_with_exit_code_2(project, capsys):
    (project / "bad.yaml").write_text("train: {lr: 1e-4}\n")
    assert main(["config", "-p", "params.yaml", "-p", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mbmt config: error: params.yaml + bad.yaml: invalid parameters")
    assert "write 1.0e-4" in err


def test_config_writes_the_merged_params(project):
    assert main(["config", "-p", "params.yaml", "-p", "tiny.yaml", "--output", "merged.yaml"]) == 0
    from mbmt.config import load_params

    assert load_params(["merged.yaml"]) == load_params(["params.yaml", "tiny.yaml"])

"""`mbmt params`: the parameter table beside the paper's counts, and its JSON."""

from __future__ import annotations

import json

import yaml

from mbmt.cli import main
from mbmt.config import model_settings
from mbmt.models import count_parameters, create_model
from mbmt.stages.params import format_table


def test_format_table_puts_the_paper_beside_ours():
    counts = {"st_ss": {"trainable": 110, "total": 110}, "mbmt_partial": {"trainable": 45, "total": 150},
              "mbmt_full_scratch": {"trainable": 7, "total": 7}}
    paper = {"st_ss": {"trainable": 100, "total": 100}, "mbmt_partial": {"trainable": 50, "total": 200}}
    lines = format_table(counts, paper).splitlines()
    assert lines[0].split() == ["model", "trainable", "paper", "diff", "total", "paper", "diff"]
    assert lines[2].split() == ["st_ss", "110", "100", "+10.00", "%", "110", "100", "+10.00", "%"]
    assert lines[3].split() == ["mbmt_partial", "45", "50", "-10.00", "%", "150", "200", "-25.00", "%"]
    assert lines[4].split() == ["mbmt_full_scratch", "7", "–", "–", "7", "–", "–"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_params_command_writes_the_counts_of_every_model(project, tiny_params, capsys):
    assert main(["params", "--json", "out/params.json"]) == 0
    counts = json.loads((project / "out" / "params.json").read_text())
    assert list(counts) == list(tiny_params["models"])
    for name in ("st_snp", "mbmt_partial"):
        assert counts[name] == count_parameters(create_model(model_settings(tiny_params, name), load_init=False))
    assert counts["mbmt_partial"]["trainable"] < counts["mbmt_partial"]["total"]
    table = capsys.readouterr().out
    assert "profile 'tiny'" in table and "44,229,076" in table  # the paper's MTAN beside ours
    assert [line.split()[2] for line in table.splitlines() if line.startswith("mbmt_full")] == ["–", "–"]
    assert table.splitlines()[-1] == ("seeds [0]: every model trains once; each result of the report is that "
                                      "run's (parameter counts do not depend on the seed)")


def test_params_command_states_how_many_seeds_each_result_averages(project, capsys):
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": [0, 1, 2]}))
    assert main(["params"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "seeds [0, 1, 2]: every model trains 3 times; each result of the report averages 3 runs "
        "(parameter counts do not depend on the seed)")

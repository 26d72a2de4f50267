"""Params ``data`` reaches the data code as typed, immutable settings (mbmt.data.settings), which
the stages unpack at their boundary: no function of mbmt.data takes the params dict."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from mbmt.config import load_params
from mbmt.data.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]
DATA_PACKAGE = REPO / "src" / "mbmt" / "data"


@pytest.mark.parametrize("presets", [[], ["config/demo.yaml"], ["tests/tiny.yaml"]])
def test_settings_give_back_the_section_as_written(presets):
    """The manifest records the section from the settings: the same keys, values and order."""
    section = load_params([REPO / "params.yaml", *(REPO / preset for preset in presets)])["data"]
    settings = DataSettings.from_section(section)
    assert json.dumps(settings.as_section()) == json.dumps(section)
    assert settings.synthetic.size("test") == section["synthetic"]["test_size"]


def test_settings_are_immutable(tiny_params):
    settings = DataSettings.from_section(tiny_params["data"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.height = 32
    with pytest.raises(TypeError):
        settings.nyuv2.sha256["https://example.org/nyuv2.zip"] = "0" * 64
    pair = settings.nyuv2.sources[2]
    with pytest.raises(TypeError):
        pair["train"] = "https://example.org/train.zip"
    tiny_params["data"]["nyuv2"]["sources"][2]["train"] = "changed"  # the settings hold their own copy
    assert pair["train"] != "changed"


def test_no_data_function_takes_the_params_dict():
    """Every function of mbmt.data takes settings or named values: none has a ``params`` argument
    or indexes a ``params`` name."""
    found = []
    for path in sorted(DATA_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
                found += [f"{path.relative_to(REPO)}:{node.lineno} {node.name}({name})"
                          for name in names if name == "params"]
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "params":
                found.append(f"{path.relative_to(REPO)}:{node.lineno} params[...]")
    assert not found, found

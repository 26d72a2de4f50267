"""The report's settings: the report stage unpacks its own params keys and what the plan derives from
them into one frozen ReportSettings, and the reporting library below it never sees the params dict
(docs/code.md, "The report")."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from mbmt.plan import Plan
from mbmt.config import load_params
from mbmt.stages.report import report_settings

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "mbmt"


def test_the_stage_unpacks_the_report_keys_and_the_plans_models_and_study_jobs():
    params = load_params([REPO / "params.yaml", REPO / "tests" / "tiny.yaml", REPO / "config/studies/weighting.yaml"])
    params["seeds"] = [3, 1]
    params["report"]["bootstrap"] = {"samples": 123, "seed": 7}
    settings = report_settings(params)
    assert settings.models == ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial", "mbmt_full_pretrained",
                               "mbmt_full_scratch", "mtan")  # params order: the report's rows follow it
    assert settings.single_task == ("st_ss", "st_de", "st_snp")
    assert settings.seeds == (3, 1) and settings.qualitative_images == 2
    assert dict(settings.bootstrap) == {"samples": 123, "seed": 7}
    assert settings.real_images is False
    [study] = settings.studies
    assert study.name == "weighting" and study.study == params["studies"]["weighting"]
    assert study.members == Plan(params).study_members("weighting")
    assert study.members["dwa"]["mtnet"] == "mtnet"  # the baseline variant runs the main model itself
    assert study.members["famo"]["mtnet"] == "mtnet-weighting-famo"

    params["data"]["real_images"] = "frames/"
    assert report_settings(params).real_images is True
    # Frozen: no table can change a setting under the next one.
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seeds = (0,)
    with pytest.raises(TypeError):
        settings.bootstrap["samples"] = 1
    params["report"]["bootstrap"]["samples"] = 1
    assert settings.bootstrap["samples"] == 123  # a copy, not a view of the params


def test_reporting_and_provenance_take_named_values_not_the_params():
    """No function of reporting/ or provenance.py has a ``params`` argument, and reporting/ imports
    neither the params (config) nor the plan (dag): the report stage hands them what they need."""
    files = [*sorted((PACKAGE / "reporting").glob("*.py")), PACKAGE / "provenance.py"]
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if any(argument.arg == "params" for argument in arguments):
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.name}(params)")
            if path.parent.name == "reporting":
                modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                           else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
                for module in modules:
                    if module in ("mbmt.dag", "mbmt.plan", "mbmt.config") or (module == "mbmt" and {"dag", "plan", "config"} & set(names)):
                        offenders.append(f"{path.relative_to(PACKAGE)}: imports {module} {names}")
    assert not offenders, offenders

"""Seeds as a dimension of the DAG, end to end, in a git + DVC copy of the project: the tiny
configuration cut to three models (two ST-Nets and the paper's MBMT-Net, which starts from them)
with seeds [0, 1]. Through Snakemake and through `dvc repro`, each from scratch: every model trains
and is evaluated once per seed, into its own outputs, each seed's MBMT-Net from that seed's
ST-Nets; adding seed 2 then re-runs exactly seed 2's jobs and the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow_project import (SNAKEMAKE_FAST, copy_project, dvc_changed, files_of, init_git_dvc, outputs,
                                   planned, run)

from mbmt import dag, paths

pytestmark = pytest.mark.slow

ST_NETS = ("st_ss", "st_de")
MODELS = (*ST_NETS, "mbmt_partial")  # mbmt_partial: frozen encoders, copied from its seed's ST-Nets


def set_seeds(root: Path, seeds: list[int]) -> None:
    """params.yaml's seeds, and dvc.yaml regenerated as docs/workflow.md says."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"] = seeds
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["mbmt", "dag"], root)


def seeded_project(root: Path, seeds: list[int]) -> Path:
    copy_project(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"] = {name: params["models"][name] for name in MODELS}
    params["models"]["mbmt_partial"].update(init_from=list(ST_NETS), backbones=["test_efficientnet"] * len(ST_NETS))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    set_seeds(root, seeds)
    init_git_dvc(root)
    return root


def per_seed_stages(seeds) -> set[str]:
    return ({dag.job_name("train", name, seed) for name in ST_NETS for seed in seeds}
            | {dag.job_name("train_from_st", "mbmt_partial", seed) for seed in seeds}
            | {dag.job_name("evaluate", name, seed) for name in MODELS for seed in seeds})


def seed_outputs(seed: int) -> set[str]:
    return {str(path) for name in MODELS for path in dag.train_outputs(name, seed) + dag.evaluate_outputs(name, seed)}


def written(root: Path) -> dict[str, int]:
    """Each existing output's latest modification time (ns)."""
    return {out: max(f.stat().st_mtime_ns for f in files_of(root / out))
            for out in outputs(root) if (root / out).exists()}


def encoder(root: Path, name: str, seed: int, prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    state = torch.load(root / paths.model_file(name, seed), weights_only=True)["state_dict"]
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_trained_per_seed(root: Path, seeds: list[int]) -> None:
    """Each seed's own weights, metrics of those weights, and MBMT-Net encoders from its seed's ST-Nets."""
    import json

    from mbmt.io import sha256_file

    for name in MODELS:
        for seed in seeds:
            context = json.loads((root / paths.metrics_file(name, seed)).read_text())["context"]
            assert context["checkpoint_sha256"] == sha256_file(root / paths.model_file(name, seed)), (name, seed)
    for st in ST_NETS:
        weights = [encoder(root, st, seed) for seed in seeds]
        assert not any(same(a, b) for i, a in enumerate(weights) for b in weights[i + 1:]), st
    for seed in seeds:
        for index, st in enumerate(ST_NETS):
            frozen = encoder(root, "mbmt_partial", seed, f"encoder.backbones.{index}.")
            assert {s for s in seeds if same(frozen, encoder(root, st, s))} == {seed}, (st, seed)


def test_snakemake_trains_every_model_once_per_seed_and_a_new_seed_alone(tmp_path):
    root = seeded_project(tmp_path / "project", [0, 1])
    assert planned(root) == per_seed_stages([0, 1]) | {"fetch", "preprocess", "report"}
    run(["snakemake", *SNAKEMAKE_FAST], root)
    assert_trained_per_seed(root, [0, 1])

    set_seeds(root, [0, 1, 2])
    assert planned(root) == per_seed_stages([2]) | {"report"}
    before = written(root)
    run(["snakemake", *SNAKEMAKE_FAST], root)
    after = written(root)
    assert {out for out in after if after[out] != before.get(out)} == seed_outputs(2) | set(map(str, dag.REPORT_OUTPUTS))
    assert_trained_per_seed(root, [0, 1, 2])
    assert planned(root) == set() and dvc_changed(root) == set()  # the run was recorded for DVC


def test_dvc_repro_trains_every_model_once_per_seed_and_a_new_seed_alone(tmp_path):
    root = seeded_project(tmp_path / "project", [0, 1])
    stages = re.findall(r"Running stage '([^']+)'", run(["dvc", "repro"], root).stdout)
    assert sorted(stages) == sorted(per_seed_stages([0, 1]) | {"fetch", "preprocess", "report"})
    assert_trained_per_seed(root, [0, 1])

    set_seeds(root, [0, 1, 2])
    assert dvc_changed(root) == per_seed_stages([2]) | {"report"}
    before = written(root)
    stages = re.findall(r"Running stage '([^']+)'", run(["dvc", "repro"], root).stdout)
    assert sorted(stages) == sorted(per_seed_stages([2]) | {"report"})
    after = written(root)
    assert {out for out in after if after[out] != before.get(out)} == seed_outputs(2) | set(map(str, dag.REPORT_OUTPUTS))
    assert_trained_per_seed(root, [0, 1, 2])

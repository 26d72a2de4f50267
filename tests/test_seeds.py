"""Seeds through `dvc repro` from scratch, in a git + DVC copy of the project on the tiny preset
with seeds [0, 1]: the paper's MBMT-Net and the three ST-Nets it starts from train once per seed,
each seed's MBMT-Net from that seed's ST-Nets; adding seed 2 then runs seed 2's chain alone.
(The whole DAG with two seeds, and a third seed through both front ends, is tests/test_workflow.py;
this one keeps to one model's chain to stay short.)"""

from __future__ import annotations

import re

import pytest
from test_workflow_project import assert_trained_per_seed, copy_project, init_git_dvc, run, set_seeds, written

from mbmt.plan import evaluate_outputs, job_name, train_outputs

pytestmark = pytest.mark.slow

MODEL = "mbmt_partial"
ST_NETS = ("st_ss", "st_de", "st_snp")


def chain(seed: int) -> set[str]:
    """The stages `dvc repro evaluate@mbmt_partial-<seed>` needs, beyond the data."""
    return ({job_name("train", st, seed) for st in ST_NETS}
            | {job_name("train_from_st", MODEL, seed), job_name("evaluate", MODEL, seed)})


def repro(root, *targets: str) -> list[str]:
    """The stages a `dvc repro` of ``targets`` ran, in order."""
    return re.findall(r"Running stage '([^']+)'", run(["dvc", "repro", *targets], root).stdout)


def test_dvc_trains_each_seed_from_its_own_st_nets_and_a_new_seed_alone(tmp_path):
    root = copy_project(tmp_path / "project")
    set_seeds(root, [0, 1])
    init_git_dvc(root)
    ran = repro(root, job_name("evaluate", MODEL, 0), job_name("evaluate", MODEL, 1))
    assert sorted(ran) == sorted(chain(0) | chain(1) | {"fetch", "preprocess"})
    assert_trained_per_seed(root, [*ST_NETS, MODEL], [0, 1], evaluated=[MODEL])

    set_seeds(root, [0, 1, 2])
    before = written(root)
    ran = repro(root, *(job_name("evaluate", MODEL, seed) for seed in (0, 1, 2)))
    assert sorted(ran) == sorted(chain(2))
    after = written(root)
    assert {out for out in after if after[out] != before.get(out)} == {
        str(path) for name in (*ST_NETS, MODEL) for path in train_outputs(name, 2)} | {
        str(path) for path in evaluate_outputs(MODEL, 2)}
    assert_trained_per_seed(root, [*ST_NETS, MODEL], [0, 1, 2], evaluated=[MODEL])

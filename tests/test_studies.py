"""Studies as a dimension of the DAG (params `studies`, mbmt.dag.study_jobs; docs/workflow.md,
"Studies"): which jobs a study adds, that both front ends declare them alike, that the weighting
study on the paper's params runs the ST-Nets once, that adding a variant adds only its jobs, and
the study tables. Nothing is trained (tests/test_studies_run.py runs them, slow tier)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_workflow_project import REPO, copy_project, dry_run_jobs, dvc_view, run, snakemake_view

from mbmt import dag
from mbmt.config import load_params
from mbmt.errors import ParamsError

WEIGHTING = REPO / "config" / "studies" / "weighting.yaml"
BACKBONES = REPO / "config" / "studies" / "backbones.yaml"
ST_NETS = ("st_ss", "st_de", "st_snp")


def paper_with(*presets: Path) -> dict:
    return load_params([REPO / "params.yaml", *presets])


def test_weighting_study_shares_the_st_nets():
    """The single-task models weigh their one task 1 whatever the method: every variant runs the
    main ST-Nets, DWA (the paper's) is the main models themselves, each other variant adds its MT-Net
    and MBMT-Net."""
    params = paper_with(WEIGHTING)
    variants = list(params["studies"]["weighting"]["variants"])
    members = dag.study_members(params, "weighting")
    assert list(members) == variants
    for variant, jobs in members.items():
        assert {jobs[st] for st in ST_NETS} == set(ST_NETS), variant
        expected = ({"mtnet", "mbmt_partial"} if variant == "dwa"
                    else {f"mtnet-weighting-{variant}", f"mbmt_partial-weighting-{variant}"})
        assert {jobs["mtnet"], jobs["mbmt_partial"]} == expected
    assert len(dag.study_jobs(params)) == 2 * (len(variants) - 1)
    # Each MBMT-Net starts from the main ST-Nets, under its variant's weighting.
    job = dag.job_params(params, "mbmt_partial-weighting-pcgrad")
    assert job["models"]["mbmt_partial-weighting-pcgrad"]["init_from"] == list(ST_NETS)
    assert job["train"]["weighting"] == "pcgrad"
    assert dag.job_params_keys(params, "train", "mbmt_partial-weighting-pcgrad")[-2:] == [
        "models.mbmt_partial", "studies.weighting.variants.pcgrad"]


def test_backbone_study_runs_each_backbones_st_nets():
    """The baseline (paper) is the main models; every backbone but the paper's b2 trains its own
    ST-Nets, and its MBMT-Net starts from them; b2's ST-Nets and MBMT-Net are the main ones (MT-Net
    on b2, not the paper's b5, is new)."""
    params = paper_with(BACKBONES)
    members = dag.study_members(params, "backbones")
    assert set(members["paper"].values()) == {*ST_NETS, "mtnet", "mbmt_partial"}
    assert members["efficientnet_b2"] == {**{st: st for st in ST_NETS}, "mtnet": "mtnet-backbones-efficientnet_b2",
                                          "mbmt_partial": "mbmt_partial"}
    resnet = members["resnet50"]
    assert resnet["st_ss"] == "st_ss-backbones-resnet50"
    assert dag.init_from(params, resnet["mbmt_partial"]) == [f"{st}-backbones-resnet50" for st in ST_NETS]
    assert dag.job_params(params, "st_de-backbones-resnet50")["models"]["st_de-backbones-resnet50"]["backbone"] == "resnet50"
    # One weights job per backbone the jobs start from ImageNet weights of.
    assert dag.imagenet_backbones(params) == sorted(
        {"convnext_tiny", "efficientnet_b0", "efficientnet_b2", "efficientnet_b4", "efficientnet_b5", "resnet50"})
    assert len(dag.study_jobs(params)) == 4 * 5 + 1


def test_study_validation():
    params = paper_with(WEIGHTING)
    broken = copy.deepcopy(params)
    broken["studies"]["weighting"]["baseline"] = "nope"
    with pytest.raises(ParamsError, match="baseline: 'nope' is not one of its variants"):
        from mbmt.config import validate

        validate(broken)
    broken = copy.deepcopy(params)
    broken["studies"]["weighting"]["variants"]["equal"] = {"train": {"weighting": "nope"}}
    with pytest.raises(ParamsError, match="study weighting variant equal"):
        validate(broken)
    broken = copy.deepcopy(params)
    broken["studies"]["weighting"]["variants"]["equal"] = {"data": {"height": 8}}
    with pytest.raises(ParamsError, match="unknown key"):
        validate(broken)
    with pytest.raises(ParamsError, match="study jobs: mtnet-weighting-equal"):
        dag.job_params(params, "mtnet-weighting-nope")


def test_snakemake_dry_run_of_the_weighting_study_shows_the_st_nets_once(tmp_path):
    """`snakemake -n` with the weighting preset on the paper's params (Done means of issue 18)."""
    root = copy_project(tmp_path / "project", preset=None)
    output = run(["snakemake", "-n", "--cores", "1", "--configfile", "config/studies/weighting.yaml"], root).stdout
    jobs = set(dry_run_jobs(output))
    trainings = {job for job in jobs if job.startswith(("train@", "train_from_st@"))}
    assert {job for job in trainings if "st_" in job.split("@")[1][:3]} == {f"train@{st}-0" for st in ST_NETS}
    variants = len(paper_with(WEIGHTING)["studies"]["weighting"]["variants"])
    assert len(trainings) == 8 + 2 * (variants - 1)


def with_variants(params: dict, variants: dict) -> dict:
    params = copy.deepcopy(params)
    params["studies"] = {"weighting": {"baseline": "dwa", "models": ["mtnet", "mbmt_partial"], "variants": variants}}
    return params


VARIANTS = {"dwa": {}, "equal": {"train": {"weighting": "equal"}}}
ADDED = {"hot": {"train": {"dwa_temperature": 4.0}}}


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """Both front ends' views of a project with two variants, and of the same with a third added."""
    from dvc.repo import Repo

    result = {}
    for label, variants in (("before", VARIANTS), ("after", {**VARIANTS, **ADDED})):
        root = copy_project(tmp_path_factory.mktemp(label) / "project", preset=None)
        params = with_variants(yaml.safe_load((root / "params.yaml").read_text()), variants)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["mbmt", "dag"], root)
        Repo.init(str(root), no_scm=True).close()
        result[label] = (snakemake_view(root), dvc_view(root))
    return result


def test_both_front_ends_declare_the_study_jobs_alike(views):
    snakemake_jobs, dvc_stages = views["before"]
    assert sorted(snakemake_jobs) == sorted(dvc_stages)
    for name, stage in dvc_stages.items():
        view = snakemake_jobs[name]
        assert (view.cmd, view.deps, view.outs, view.params) == (stage.cmd, stage.deps, stage.outs, stage.params), name
    job = dvc_stages["train_from_st@mbmt_partial-weighting-equal-0"]
    assert job.cmd == "mbmt train mbmt_partial-weighting-equal --seed 0"
    assert {"models/st_ss/seed0/model.pt", "data/processed/train.h5"} <= job.deps
    assert job.params["studies.weighting.variants.equal"] == {"train": {"weighting": "equal"}}
    assert "studies" in dvc_stages["report"].params


def test_adding_a_variant_adds_only_its_jobs(views):
    """The new variant's trainings and evaluations are new; every other job is declared exactly as
    before (command, inputs, outputs, params values), so neither front end re-runs it; the report,
    whose inputs grow, runs again."""
    for before, after in zip(views["before"], views["after"]):
        added = set(after) - set(before)
        assert added == {f"{stage}@{model}-weighting-hot-0" for stage, model in
                         (("train", "mtnet"), ("train_from_st", "mbmt_partial"),
                          ("evaluate", "mtnet"), ("evaluate", "mbmt_partial"))}
        assert set(before) <= set(after)
        for name in set(before) - {"report"}:
            old, new = before[name], after[name]
            assert (old.cmd, old.deps, old.outs, old.params) == (new.cmd, new.deps, new.outs, new.params), name


def test_study_tables_from_hand_made_metrics():
    """Δm against the same variant's ST-Nets and the marks against the baseline variant's model."""
    from mbmt.reporting.study import study_intervals, study_paired_table, study_table
    from mbmt.tasks import METRICS

    def blocks(scale: float) -> dict:
        result: dict = {}
        for entry in METRICS:
            result.setdefault(entry.task, {})[entry.key] = 10.0 * scale
        return result

    study = {"baseline": "a", "models": ["mtnet"], "variants": {"a": {}, "b": {}}}
    members = {"a": {"st_ss": "st_ss", "st_de": "st_de", "st_snp": "st_snp", "mtnet": "mtnet"},
               "b": {"st_ss": "st_ss", "st_de": "st_de", "st_snp": "st_snp", "mtnet": "mtnet-s-b"}}
    single = ["st_ss", "st_de", "st_snp"]
    st_blocks = blocks(1.0)
    metrics = {"st_ss": [{"semantic": st_blocks["semantic"]}], "st_de": [{"depth": st_blocks["depth"]}],
               "st_snp": [{"normal": st_blocks["normal"]}], "mtnet": [blocks(1.0)], "mtnet-s-b": [blocks(1.1)]}
    table = study_table("s", study, members, metrics, {}, single_task=single)
    from mbmt.reporting.delta_m import DELTA_M_HEADER

    delta = table.column(DELTA_M_HEADER)
    assert delta[0].value == pytest.approx(0.0)
    # +10 % on every metric: an improvement of +10 where higher is better, -10 where lower is; Δm
    # (Nash-MTL's, lower is better) is minus their mean.
    from mbmt.reporting.delta_m import DELTA_M_METRICS

    expected = -np.mean([10.0 if entry.higher_is_better else -10.0 for entry in DELTA_M_METRICS])
    assert delta[1].value == pytest.approx(expected)
    assert table.column("job") == ["mtnet", "mtnet-s-b"]
    # The paired intervals: identical per-image rows give a zero difference, not significant.
    from mbmt.metrics import PER_IMAGE_KEYS

    rng = np.random.default_rng(0)
    rows = {"index": np.arange(6)}
    rows |= {"depth_abs_sum": rng.random(6), "depth_rel_sum": rng.random(6), "depth_count": np.full(6, 100.0)}
    assert set(PER_IMAGE_KEYS["depth"]) < set(rows)
    per_image = {"mtnet": [rows], "mtnet-s-b": [rows]}
    intervals = study_intervals(members, per_image, "a", ["mtnet"], {"samples": 50, "seed": 0})
    assert set(intervals) == {("b", "mtnet", "depth", "abs_err"), ("b", "mtnet", "depth", "rel_err")}
    assert all(iv.difference == 0 and not iv.significant for iv in intervals.values())
    assert len(study_paired_table("s", intervals).rows) == 2


def test_study_marks_are_holm_corrected_and_only_on_tested_numbers():
    """A variant whose depth error is lower on every image is marked, with p Holm-corrected over the
    study's comparisons; the same intervals mark nothing when the metrics files report last_k."""
    from mbmt.reporting.study import study_intervals, study_paired_table, study_table

    study = {"baseline": "a", "models": ["mtnet"], "variants": {"a": {}, "b": {}}}
    members = {"a": {"st_de": "st_de", "mtnet": "mtnet"}, "b": {"st_de": "st_de", "mtnet": "mtnet-s-b"}}
    rng = np.random.default_rng(0)
    base = {"index": np.arange(20), "depth_abs_sum": 50 + rng.random(20), "depth_rel_sum": 20 + rng.random(20),
            "depth_count": np.full(20, 100.0)}
    better = {**base, "depth_abs_sum": base["depth_abs_sum"] - 10.0}  # abs err 0.1 lower on every image
    intervals = study_intervals(members, {"mtnet": [base], "mtnet-s-b": [better]}, "a", ["mtnet"],
                                {"samples": 2000, "seed": 0})
    abs_err, rel_err = intervals[("b", "mtnet", "depth", "abs_err")], intervals[("b", "mtnet", "depth", "rel_err")]
    assert abs_err.family == rel_err.family == 2
    assert abs_err.p == pytest.approx(2 / 2001) and abs_err.p_holm == pytest.approx(2 * 2 / 2001)  # Holm: m x p
    assert abs_err.significant and not rel_err.significant

    def table(protocol: str):
        context = {"protocol": protocol, "averaging": "pixel"}
        metrics = {job: [{"depth": {"abs_err": value, "rel_err": 0.2}, "context": context}]
                   for job, value in (("st_de", 0.5), ("mtnet", 0.5), ("mtnet-s-b", 0.4))}
        return study_table("s", study, members, metrics, intervals, single_task=["st_de"])

    from mbmt.reporting.tables import label

    def marks(t) -> list:
        column = t.columns.index(label("depth", "abs_err"))
        return [getattr(row[column], "significant", None) is True for row in t.rows]

    assert marks(table("final")) == [False, True]
    assert marks(table("last_k")) == [False, False]  # the shown last_k number is not the tested one
    assert "Holm-corrected over the study's 2 comparisons" in " ".join(table("final").notes)
    paired = study_paired_table("s", intervals)
    assert paired.columns[-5:] == ["seed std", "p", "p (Holm)", "significant", "seeds"]

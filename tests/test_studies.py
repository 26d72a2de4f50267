"""Studies as a dimension of the DAG (params `studies`, mbmt.plan; docs/workflow.md,
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

from mbmt.config import load_params
from mbmt.errors import ParamsError
from mbmt.plan import Plan

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
    plan = Plan(params)
    variants = list(params["studies"]["weighting"]["variants"])
    members = plan.study_members("weighting")
    assert list(members) == variants
    for variant, jobs in members.items():
        assert {jobs[st] for st in ST_NETS} == set(ST_NETS), variant
        expected = ({"mtnet", "mbmt_partial"} if variant == "dwa"
                    else {f"mtnet-weighting-{variant}", f"mbmt_partial-weighting-{variant}"})
        assert {jobs["mtnet"], jobs["mbmt_partial"]} == expected
    assert len(plan.study_jobs) == 2 * (len(variants) - 1)
    assert plan.trained_jobs == plan.job_names  # every study job trains
    # Each MBMT-Net starts from the main ST-Nets, under its variant's weighting.
    job = plan.job_params("mbmt_partial-weighting-pcgrad")
    assert job["models"]["mbmt_partial-weighting-pcgrad"]["init_from"] == list(ST_NETS)
    assert job["train"]["weighting"] == "pcgrad"
    assert plan.job_params_keys("train", "mbmt_partial-weighting-pcgrad")[-2:] == [
        "models.mbmt_partial", "studies.weighting.variants.pcgrad"]


def test_backbone_study_runs_each_backbones_st_nets():
    """The baseline (paper) is the main models; every backbone but the paper's b2 trains its own
    ST-Nets, and its MBMT-Net starts from them; b2's ST-Nets and MBMT-Net are the main ones (MT-Net
    on b2, not the paper's b5, is new)."""
    params = paper_with(BACKBONES)
    plan = Plan(params)
    members = plan.study_members("backbones")
    assert set(members["paper"].values()) == {*ST_NETS, "mtnet", "mbmt_partial"}
    assert members["efficientnet_b2"] == {**{st: st for st in ST_NETS}, "mtnet": "mtnet-backbones-efficientnet_b2",
                                          "mbmt_partial": "mbmt_partial"}
    resnet = members["resnet50"]
    assert resnet["st_ss"] == "st_ss-backbones-resnet50"
    assert plan.init_from(resnet["mbmt_partial"]) == [f"{st}-backbones-resnet50" for st in ST_NETS]
    assert plan.job_params("st_de-backbones-resnet50")["models"]["st_de-backbones-resnet50"]["backbone"] == "resnet50"
    # One weights job per backbone the jobs start from ImageNet weights of.
    assert plan.imagenet_backbones == sorted(
        {"convnext_tiny", "efficientnet_b0", "efficientnet_b2", "efficientnet_b4", "efficientnet_b5", "resnet50"})
    assert len(plan.study_jobs) == 4 * 5 + 1


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
        Plan(params).job_params("mtnet-weighting-nope")


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
# A variant that changes only how the models are evaluated (issue 24's review finding).
EVALUATE_ONLY = {"batch": {"evaluate": {"averaging": "batch"}}}


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """Both front ends' views of a project with two variants, and of the same with a third added
    (after: one that trains; evaluate_only: one that changes only `evaluate`)."""
    from dvc.repo import Repo

    result = {}
    for label, variants in (("before", VARIANTS), ("after", {**VARIANTS, **ADDED}),
                            ("evaluate_only", {**VARIANTS, **EVALUATE_ONLY})):
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


def test_an_evaluate_only_variant_adds_evaluations_of_the_shared_trainings(views):
    """Both front ends plan, for a variant that changes only `evaluate`, one evaluate job per model
    of its closure (the study's models and the ST-Nets), each reading the main model's file and
    writing its own metrics, and no training; every other job is declared as before."""
    closure = [*ST_NETS, "mtnet", "mbmt_partial"]
    snakemake_jobs, dvc_stages = views["evaluate_only"]
    assert sorted(snakemake_jobs) == sorted(dvc_stages)
    for name, stage in dvc_stages.items():
        view = snakemake_jobs[name]
        assert (view.cmd, view.deps, view.outs, view.params) == (stage.cmd, stage.deps, stage.outs, stage.params), name
    for before, after in zip(views["before"], views["evaluate_only"]):
        assert set(after) - set(before) == {f"evaluate@{model}-weighting-batch-0" for model in closure}
        for name in set(before) - {"report"}:
            old, new = before[name], after[name]
            assert (old.cmd, old.deps, old.outs, old.params) == (new.cmd, new.deps, new.outs, new.params), name
    for model in closure:
        job = dvc_stages[f"evaluate@{model}-weighting-batch-0"]
        assert job.cmd == f"mbmt evaluate {model}-weighting-batch --seed 0"
        assert {d for d in job.deps if d.endswith("model.pt")} == {f"models/{model}/seed0/model.pt"}
        assert job.outs == {f"metrics/{model}-weighting-batch/seed0.json",
                            f"metrics/{model}-weighting-batch/seed0.images.npz"}
        assert job.params["studies.weighting.variants.batch"] == {"evaluate": {"averaging": "batch"}}
    assert "metrics/mtnet-weighting-batch/seed0.json" in dvc_stages["report"].deps


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


def test_average_ranks_and_mean_rank_by_hand():
    """Ranks in each metric's direction with a tie sharing its mean rank; MR is their mean."""
    from mbmt.reporting.study import average_ranks, mean_ranks
    from mbmt.tasks import metric

    assert average_ranks([50.0, 40.0, 50.0, 30.0], higher_is_better=True) == [1.5, 3.0, 1.5, 4.0]
    assert average_ranks([0.5, 0.4, 0.5, 0.3], higher_is_better=False) == [3.5, 2.0, 3.5, 1.0]
    scipy_stats = pytest.importorskip("scipy.stats")
    values = [3.0, 1.0, 3.0, 3.0, 2.0]
    assert average_ranks(values, False) == scipy_stats.rankdata(values, method="average").tolist()

    over = [metric("semantic", "miou"), metric("depth", "abs_err")]
    rows = {"a": {"semantic": {"miou": 40.0}, "depth": {"abs_err": 0.50}},
            "b": {"semantic": {"miou": 42.0}, "depth": {"abs_err": 0.50}},
            "c": {"semantic": {"miou": 38.0}, "depth": {"abs_err": 0.45}},
            "d": {"semantic": {"miou": 45.0}}}  # lacks abs err: not ranked
    # mIoU ↑ among a, b, c: b 1, a 2, c 3; abs err ↓: c 1, a and b tie for 2 and 3 -> 2.5 each
    assert mean_ranks(rows, over) == {"a": pytest.approx((2 + 2.5) / 2), "b": pytest.approx((1 + 2.5) / 2),
                                      "c": pytest.approx((3 + 1) / 2), "d": None}


def three_variant_study():
    """Variants a (baseline), b, c of mtnet over two seeds, hand-made: ST-Nets at 10, then 20, on every metric."""
    from mbmt.tasks import METRICS

    def blocks(scale: float, depth_scale: float | None = None) -> dict:
        result: dict = {}
        for entry in METRICS:
            factor = depth_scale if entry.task == "depth" and depth_scale is not None else scale
            result.setdefault(entry.task, {})[entry.key] = 10.0 * factor
        return result

    study = {"baseline": "a", "models": ["mtnet"], "variants": {"a": {}, "b": {}, "c": {}}}
    single = ["st_ss", "st_de", "st_snp"]
    members = {v: {"st_ss": "st_ss", "st_de": "st_de", "st_snp": "st_snp", "mtnet": f"mtnet-{v}"} for v in "abc"}
    st = [blocks(1.0), blocks(2.0)]  # seed 1's ST-Nets twice seed 0's: each seed is compared with its own
    metrics = {"st_ss": [{"semantic": b["semantic"]} for b in st], "st_de": [{"depth": b["depth"]} for b in st],
               "st_snp": [{"normal": b["normal"]} for b in st],
               "mtnet-a": [blocks(1.0), blocks(2.0)],  # equal to the ST-Nets
               "mtnet-b": [blocks(1.1), blocks(2.6)],  # every metric 10 % then 30 % above the same seed's ST
               "mtnet-c": [blocks(1.0, depth_scale=0.9), blocks(2.0, depth_scale=1.8)]}  # depth 10 % lower
    return study, members, metrics, single


def test_study_table_carries_the_mean_rank():
    from mbmt.reporting.delta_m import DELTA_M_METRICS
    from mbmt.reporting.study import MR_HEADER, study_table

    study, members, metrics, single = three_variant_study()
    table = study_table("s", study, members, metrics, {}, single_task=single)
    assert "↓" in MR_HEADER and any("Lower is better" in note for note in table.notes)
    mr = [cell.value for cell in table.column(MR_HEADER)]
    # Per metric (means over seeds): a 15, b 18.5 on all, c 13.5 on depth's and 15 on the others.
    higher = [e for e in DELTA_M_METRICS if e.higher_is_better]
    depth = [e for e in DELTA_M_METRICS if e.task == "depth"]  # both lower-is-better
    others_lower = [e for e in DELTA_M_METRICS if not e.higher_is_better and e.task != "depth"]
    # higher-better metrics: b 1, a and c tie 2.5; depth errors: c 1, a 2, b 3; other errors: a, c tie 1.5, b 3
    ranks = {"a": 2.5 * len(higher) + 2 * len(depth) + 1.5 * len(others_lower),
             "b": 1 * len(higher) + 3 * len(depth) + 3 * len(others_lower),
             "c": 2.5 * len(higher) + 1 * len(depth) + 1.5 * len(others_lower)}
    assert mr == pytest.approx([ranks[v] / len(DELTA_M_METRICS) for v in "abc"])


def test_study_figure_data_by_hand():
    """The bars: per-task Δm per seed against the same seed's ST-Nets, mean and sample std; the
    trade-off points: the headline metrics per seed."""
    from mbmt.reporting.study import task_changes, tradeoff_points
    from mbmt.tasks import METRICS

    study, members, metrics, single = three_variant_study()
    bars = {(bar.variant, bar.task): bar for bar in task_changes(study, members, metrics, single)}
    assert set(bars) == {(v, t) for v in "abc" for t in ("semantic", "depth", "normal")}
    assert bars[("a", "depth")].mean == pytest.approx(0.0) and bars[("a", "depth")].std == pytest.approx(0.0)
    # b, semantic (mIoU, pixel acc: higher is better): improvement +10 then +30 -> per-task Δm -10, -30
    assert bars[("b", "semantic")].mean == pytest.approx(-20.0)
    assert bars[("b", "semantic")].std == pytest.approx(np.std([-10.0, -30.0], ddof=1))
    # b, depth (two errors, lower is better): +10 % then +30 % error -> +10, +30
    assert bars[("b", "depth")].mean == pytest.approx(20.0)
    # b, normal: mean, median angle (lower better) +10 %, within-angles (higher better) +10 %: seed 0
    # Δ = mean(+10, +10, -10, -10, -10) = -2; seed 1 with 30 %: -6
    normal = [e for e in METRICS if e.task == "normal" and e.key != "loss"]
    assert [e.higher_is_better for e in normal] == [False, False, True, True, True]
    assert bars[("b", "normal")].mean == pytest.approx(-4.0)
    assert bars[("c", "depth")].mean == pytest.approx(-10.0) and bars[("c", "depth")].seeds == 2
    points = {p.variant: p for p in tradeoff_points(study, members, metrics, ("semantic", "depth"))}
    assert points["b"].x == pytest.approx([11.0, 26.0]) and points["b"].y == pytest.approx([11.0, 26.0])
    assert points["c"].y == pytest.approx([9.0, 18.0])
    # One seed: no spread
    one = {job: runs[:1] for job, runs in metrics.items()}
    assert all(bar.std is None for bar in task_changes(study, members, one, single))


def test_study_figures_render_and_are_in_the_index(tmp_path):
    from mbmt.reporting import document
    from mbmt.reporting.build import draw_study_figures

    study, members, metrics, single = three_variant_study()
    listed = draw_study_figures([("s", study, members, metrics, {})], single, tmp_path)
    assert [path for _, _, path in listed] == ["figures/study_s_tasks.png", "figures/study_s_tradeoff.png"]
    for name in ("study_s_tasks.png", "study_s_tradeoff.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "error bars: the sample standard deviation over the seeds" in listed[0][1]
    one = draw_study_figures([("s", study, members, {j: r[:1] for j, r in metrics.items()}, {})], single, tmp_path)
    assert "one seed, so no error bars" in one[0][1]
    summary = {"profiles": ["demo"], "seeds": [0, 1], "averaging": "pixel", "protocol": "final",
               "evaluation": "test", "training_hardware": [], "evaluation_hardware": [], "git_revision": "x",
               "date": "d", "dataset": {"source": "synthetic", "origin": "o", "resolution": [8, 8],
                                        "splits": {}, "manifest": {"path": "m", "md5": "0"}}}
    index = document.render(summary, [], listed, {}, {})
    assert "### Study s" in index and "](figures/study_s_tasks.png)" in index
    assert "](figures/study_s_tradeoff.png)" in index

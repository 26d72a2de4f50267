"""The paper's four tables as data, each measured value beside the published one.

Pure functions of the metrics JSON (DESIGN §3 blocks, paper units), one per seed of each model,
the parameter counts and the paired intervals (mbmt.reporting.statistics), so every number can
be checked by hand; mbmt.reporting.render writes them as Markdown, CSV and HTML. Our numbers are the mean
± the sample standard deviation over the seeds (no ± with one seed); the later published
results (mbmt.anchors) stand beside the paper's as reference columns.

"ours" in the paper is MBMT-Net DWA, the partial variant (frozen ST encoders, see mbmt.paper);
the EfficientPS column is each task's single-task model (ST-SS for SS, ST-DE for DE, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mbmt import anchors, paper
from mbmt.reporting.statistics import (
    ALPHA,
    TESTED_AVERAGING,
    TESTED_PROTOCOL,
    Interval,
    smallest_family_p,
    spread,
)
from mbmt.tasks import HEADLINE_METRICS, METRICS, TASK_ABBREVIATIONS, TASKS, metric

OURS = "mbmt_partial"  # the paper's MBMT-Net DWA
ST_COLUMN = "efficientps_st"  # the paper's EfficientPS column: the single-task models, task by task
# The comparisons of the paper's relative-improvement table, in its row order.
BASELINES = ("mtan", ST_COLUMN, "mtnet")
# Titles of the columns/rows; the paper's wording where it has the model.
TITLES = {
    ST_COLUMN: "EfficientPS (ST-Nets)",
    "st_ss": "ST-SS-Net",
    "st_de": "ST-DE-Net",
    "st_snp": "ST-SNP-Net",
    "mtnet": "MT-Net DWA",
    "mbmt_partial": "MBMT-Net DWA (partial)",
    "mbmt_full_pretrained": "MBMT-Net full, ST-pretrained",
    "mbmt_full_scratch": "MBMT-Net full, from scratch",
    "mtan": "MTAN DWA",
}
PARAMETER_QUANTITIES = (("trainable", "Trainable #P"), ("total", "Total #P"))
# Each table's title by its name (the file stem in reports/tables/), the paper's order.
TABLE_TITLES = {
    "headline": "At a glance: each task's headline metric and the trainable parameters",
    "architectures": "Architectures",
    "parameters": "Parameters (trainable / total)",
    "results": "Results on the test split (the paper's 12 metrics)",
    "delta_m": "Δm: each multi-task model against the single-task models (%, Nash-MTL's definition: lower is "
               "better, negative = better than single-task)",
    "recent_anchors": "The newest SegNet-MTAN results on NYUv2 (2023–2025), quoted with their Δm (Nash-MTL's "
                      "definition, lower is better) against their own single-task SegNet",
    "relative_improvements": "Relative improvements of MBMT-Net (%, positive = MBMT-Net better)",
    "paired_differences": "MBMT-Net minus each baseline on the same test images (paired 95 % bootstrap intervals, "
                          "seed spread, Holm-corrected significance)",
}
SIGNIFICANT = "*"  # marks a tested relative improvement whose Holm-adjusted bootstrap p < ALPHA
# (variant, baseline, task, metric) -> the paired interval of variant minus baseline
Intervals = Mapping[tuple[str, str, str, str], Interval]


@dataclass(frozen=True)
class Num:
    """A number and the digits it is shown with (CSV keeps it whole), with its standard deviation
    over seeds and whether it is a significant difference, where those apply."""

    value: float | int
    digits: int = 2
    suffix: str = ""
    std: float | None = None
    significant: bool | None = None

    def __str__(self) -> str:
        if isinstance(self.value, int):
            return f"{self.value:,}{self.suffix}"
        spread = "" if self.std is None else f" ± {self.std:.{self.digits}f}"
        return f"{self.value:.{self.digits}f}{spread}{self.suffix}{SIGNIFICANT if self.significant else ''}"


Cell = Num | str | None  # None: no value (the paper did not publish one, or it does not apply)


@dataclass
class Table:
    name: str  # file stem: tables/<name>.md and .csv
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)

    def column(self, title: str) -> list[Cell]:
        index = self.columns.index(title)
        return [row[index] for row in self.rows]


def label(task: str, key: str) -> str:
    """The paper's row label with the direction of "better", e.g. "mIoU (%) ↑" (mbmt.tasks.METRICS)."""
    entry = metric(task, key)
    return f"{entry.label} {'↑' if entry.higher_is_better else '↓'}"


Runs = Sequence[Mapping]  # one model's metrics, one dict per seed


def single_task_column(metrics: Mapping[str, Runs], single_task: Sequence[str]) -> list[dict]:
    """The EfficientPS column, per seed: each task's block from the model that predicts that task alone
    (``single_task``: mbmt.plan.Plan.single_task_models)."""
    column: dict[str, Runs] = {}
    for name in (name for name in single_task if name in metrics):
        task = next(task for task in TASKS if task in metrics[name][0])
        if task in column:
            raise ValueError(f"two single-task models predict {task}; the EfficientPS column needs one")
        column[task] = metrics[name]
    seeds = {len(runs) for runs in column.values()}
    if len(seeds) > 1:
        raise ValueError(f"the single-task models have different numbers of seeds ({sorted(seeds)})")
    return [{task: dict(runs[i][task]) for task, runs in column.items()} for i in range(seeds.pop() if seeds else 0)]


def with_single_task_column(metrics: Mapping[str, Runs], single_task: Sequence[str]) -> dict[str, Runs]:
    return {ST_COLUMN: single_task_column(metrics, single_task), **metrics}


# The training augmentation a metrics file's context records (mbmt.evaluation.evaluate.trained_augmentation).
AUGMENTATIONS = {"none": "no augmentation", "mtan-like": "the project's MTAN-like augmentation (train.augment: true)",
                 "mtan": "MTAN's exact augmentation (train.augment: mtan)"}


def describe_protocol(context: Mapping[str, Any]) -> str:
    """Which numbers a metrics file reports (mbmt.evaluation.protocol), how they are averaged, and
    the training augmentation behind them."""
    last_k = context.get("protocol") == "last_k"
    if last_k:
        numbers = f"last_k: the mean of the validation metrics of the last {context.get('k')} epochs"
    else:
        numbers = "final: the trained model evaluated on the split"
    if context.get("averaging") == "batch":
        size = context.get("val_batch_size") if last_k else context.get("batch_size")
        averaged = f"per-batch averages (batches of {size})"
    else:
        averaged = "per-pixel averages"
    augment = AUGMENTATIONS.get(context.get("augment"), "training augmentation not recorded")
    return f"{numbers}, {averaged}, {augment}"


def protocol_line(metrics: Mapping[str, Runs]) -> str:
    """One line: which protocol every column of the results table uses, ours and the references'."""
    ours = sorted({describe_protocol(run.get("context", {})) for runs in metrics.values() for run in runs})
    groups: dict[tuple[str, str], list[str]] = {}
    for anchor in anchors.ANCHORS:
        groups.setdefault((anchor.reported, anchor.protocol), []).append(anchor.key)
    references = "; ".join(f"{', '.join(keys)}: {reported} ({protocol})" for (reported, protocol), keys in groups.items())
    return (f"Protocols. Ours: {' / '.join(ours) or 'none evaluated'}. Paper: as published (the paper's MTAN "
            f"column from MTAN's 2019 code). {references}.")


def seeds_note(metrics: Mapping[str, Runs]) -> str:
    """How many seeds "ours" stands for."""
    n = max((len(runs) for runs in metrics.values()), default=0)
    if n == 1:
        return "Ours: one seed (n=1), so no spread is shown."
    return f"Ours: the mean ± the sample standard deviation (ddof=1) over n={n} seeds, one trained model each."


def measured(runs: Runs | None, task: str, key: str, digits: int, suffix: str = "") -> Num | None:
    """A metric of one model over its seeds: the mean with the sample std (None: not measured)."""
    stats = spread([value(run, task, key) for run in runs or []])
    return None if stats is None else Num(stats.mean, digits, suffix, stats.std)


def mean_value(runs: Runs | None, task: str, key: str) -> float | None:
    stats = spread([value(run, task, key) for run in runs or []])
    return None if stats is None else stats.mean


def reported_as(metrics: Mapping[str, Runs], name: str, task: str, single_task: Sequence[str]
                ) -> list[tuple[str, str, str | None, str | None]]:
    """(model, seed index, protocol, averaging) of every metrics file behind model ``name``'s numbers
    of ``task`` (the EfficientPS column: the single-task model of that task), as each file's
    ``context`` records them (mbmt.evaluation.evaluate); None where a file does not say."""
    if name == ST_COLUMN:
        name = next((n for n in single_task if n in metrics and any(task in run for run in metrics[n])), name)
    out = []
    for i, run in enumerate(metrics.get(name) or []):
        context = run.get("context") or {}
        out.append((name, str(i), context.get("protocol"), context.get("averaging")))
    return out


def is_tested(reported: Sequence[tuple[str, str, str | None, str | None]]) -> bool:
    """Whether every file reports the numbers the paired intervals test (mbmt.reporting.statistics)."""
    return bool(reported) and all((protocol, averaging) == (TESTED_PROTOCOL, TESTED_AVERAGING)
                                  for _, _, protocol, averaging in reported)


def describe_reported(reported: Sequence[tuple[str, str, str | None, str | None]]) -> str:
    """E.g. "MTAN DWA: protocol last_k, pixel averaging", one entry per distinct setting of a model."""
    settings = dict.fromkeys((name, protocol, averaging) for name, _, protocol, averaging in reported)
    return "; ".join(f"{TITLES.get(name, name)}: "
                     + (f"protocol {protocol}, {averaging} averaging" if protocol and averaging else "not recorded")
                     for name, protocol, averaging in settings)


def value(result: Mapping | None, task: str, key: str) -> float | None:
    block = (result or {}).get(task) or {}
    number = block.get(key)
    return None if number is None else float(number)


def relative_improvement(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """Percent by which ``ours`` is better than ``theirs``: (ours - theirs) / theirs, negated when
    lower is better, so positive always means ours is better. None if either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    change = 100.0 * (ours - theirs) / theirs
    return (change if higher_is_better else -change) + 0.0  # + 0.0: no "-0.00"


# -- the tables -------------------------------------------------------------------------------

def architecture_table(models: Mapping[str, Mapping]) -> Table:
    """The paper's architecture table; ``models``: name -> model file metadata (backbones, tasks)."""
    rows = []
    for name, meta in models.items():
        published = paper.ARCHITECTURES.get(name)
        context, backbone, architecture, abbreviation = (
            (published.context, published.backbone, published.architecture, published.abbreviation)
            if published else (None,) * 4)
        backbones = meta.get("backbones") or []
        measured_backbone = (" + ".join(f"{backbones.count(b)}x {b}" for b in dict.fromkeys(backbones))
                             if backbones else f"SegNet, filters {meta['model'].get('filters')}")
        tasks = "+".join(TASK_ABBREVIATIONS[t] for t in meta["tasks"])
        decoder = meta.get("decoder") or {}
        # A profile may train narrower decoders than the paper's (the CPU demo does): say which.
        widths = (f"FPN {decoder['fpn_channels']}, heads {decoder['head_channels']} channels"
                  if backbones and decoder else None)
        rows.append([name, abbreviation, context, backbone, architecture, measured_backbone, tasks, widths])
    return Table(
        "architectures", TABLE_TITLES["architectures"],
        ["model", "abbreviation (paper)", "context (paper)", "backbone (paper)", "architecture and tasks (paper)",
         "backbones (ours)", "tasks (ours)", "decoder (ours)"],
        rows,
        ["The paper's table lists six models; the two full MBMT-Net variants appear in its training design "
         "(full training with EfficientNet-b2 and -b5, from ST-pretrained encoders or from scratch).",
         "Backbones and decoder (ours) are the timm models and the EfficientPS-style decoder's widths the "
         "trained files record (params.yaml: FPN 256, heads 128 channels; the CPU demo trains smaller models, "
         "config/demo.yaml)."],
    )


def parameter_table(counts: Mapping[str, Mapping[str, int]]) -> Table:
    """Trainable and total parameters, ours beside the paper's; ``counts``: name -> {trainable, total}."""
    rows = []
    for name, count in counts.items():
        published = paper.PARAMETERS.get(name, {})
        row: list[Cell] = [TITLES.get(name, name)]
        for key, _ in PARAMETER_QUANTITIES:
            ours, theirs = count[key], published.get(key)
            ratio = None if theirs is None else Num(ours / theirs, 3)
            row += [Num(int(ours)), None if theirs is None else Num(int(theirs)), ratio]
        rows.append(row)
    return Table(
        "parameters", TABLE_TITLES["parameters"],
        ["model", "trainable (ours)", "trainable (paper)", "ours / paper",
         "total (ours)", "total (paper)", "ours / paper"],
        rows,
        ["Counted on the trained model files (mbmt.models.count_parameters); frozen encoders are not trainable."],
    )


def headline_table(metrics: Mapping[str, Runs], counts: Mapping[str, Mapping[str, int]], *,
                   single_task: Sequence[str]) -> Table:
    """At a glance: each task's headline metric and the trainable parameters, ours beside the paper's.
    The EfficientPS row is the ST-Nets (``single_task``) together (parameters summed: what three tasks take)."""
    metrics = with_single_task_column(metrics, single_task)
    single = [name for name in single_task if name in metrics]
    st_counts = {key: sum(counts[name][key] for name in single if name in counts) for key in ("trainable", "total")}
    st_paper = {key: sum(paper.PARAMETERS[name][key] for name in single_task if name in paper.PARAMETERS)
                for key in ("trainable", "total")}
    columns, rows = ["model"], []
    for entry in HEADLINE_METRICS.values():
        columns += [f"{label(entry.task, entry.key)} (ours)", f"{label(entry.task, entry.key)} (paper)"]
    columns += ["trainable #P (ours)", "trainable #P (paper)"]
    for name in metrics:
        if name in single:
            continue
        published = paper.RESULTS.get(name)
        row: list[Cell] = [TITLES.get(name, name)]
        for entry in HEADLINE_METRICS.values():
            task, key, digits = entry.task, entry.key, entry.digits
            row += [measured(metrics[name], task, key, digits), _num(value(published, task, key), digits)]
        ours = st_counts if name == ST_COLUMN else counts.get(name)
        theirs = st_paper if name == ST_COLUMN else paper.PARAMETERS.get(name)
        row += [None if ours is None else Num(int(ours["trainable"])), None if theirs is None else Num(int(theirs["trainable"]))]
        rows.append(row)
    return Table(
        "headline", TABLE_TITLES["headline"], columns, rows,
        ["EfficientPS (ST-Nets): each task's metric from its single-task model; parameters of the three together.",
         seeds_note(metrics)],
    )


def results_table(metrics: Mapping[str, Runs], *, single_task: Sequence[str]) -> Table:
    """The paper's 12-metric table: ours beside the paper's for its four columns, then our other
    models, then the later published results (mbmt.anchors) as reference columns."""
    protocols = protocol_line(metrics)  # of the models' own files (the EfficientPS column is made of them)
    metrics = with_single_task_column(metrics, single_task)
    published_columns = [name for name in paper.RESULTS if name in metrics]
    merged = {ST_COLUMN, *single_task}
    extra = [name for name in metrics if name not in paper.RESULTS and name not in merged]
    columns = ["task", "metric"]
    for name in published_columns:
        columns += [f"{TITLES[name]} (ours)", f"{TITLES[name]} (paper)"]
    columns += [f"{TITLES.get(name, name)} (ours)" for name in extra]
    columns += [f"{anchor.key}: {anchor.title}" for anchor in anchors.ANCHORS]
    rows = []
    for entry in METRICS:
        task, key, digits = entry.task, entry.key, entry.digits
        row: list[Cell] = [TASK_ABBREVIATIONS[task], label(task, key)]
        for name in published_columns:
            row += [measured(metrics[name], task, key, digits), _num(value(paper.RESULTS[name], task, key), digits)]
        row += [measured(metrics[name], task, key, digits) for name in extra]
        row += [_num(value(anchor.results, task, key), digits) for anchor in anchors.ANCHORS]
        rows.append(row)
    return Table(
        "results", TABLE_TITLES["results"], columns, rows,
        ["EfficientPS (ST-Nets): each task's row comes from that task's single-task model.",
         "The paper did not publish MTAN's losses.", seeds_note(metrics), protocols,
         "Reference columns (Ref.): later published results, not ours; " + anchors.EXPLANATION,
         *(anchor.description() for anchor in anchors.ANCHORS)],
    )


def improvement_table(metrics: Mapping[str, Runs], counts: Mapping[str, Mapping[str, int]],
                       variants: Sequence[str], intervals: Intervals | None = None, *,
                       single_task: Sequence[str]) -> Table:
    """The paper's relative improvements of MBMT-Net over MTAN, EfficientPS and MT-Net (percent,
    positive = MBMT-Net better): ours (of the means over seeds) for each MBMT-Net variant in
    ``variants``, the paper's for its MBMT-Net (OURS). Parameters compare single models (none
    against the three ST-Nets).

    A mark (significant or not) only where the improvement shown is of the tested numbers: both
    models' metrics files report protocol final with pixel averaging, the numbers the paired
    interval in ``intervals`` is of. Then the improvement is the interval's difference (the mean
    over seeds of ours - theirs) divided by theirs (negated where lower is better): 0 exactly when
    that difference is, and significant exactly when it is. Elsewhere (e.g. a last_k mean of
    validation epochs) the interval is of other numbers, whose difference may even have the other
    sign: no mark, and a note says why."""
    intervals = intervals or {}
    reported = metrics
    metrics = with_single_task_column(metrics, single_task)
    columns = ["versus", "quantity"]
    for variant in variants:
        columns.append(f"{TITLES.get(variant, variant)} (ours)")
        if variant == OURS:
            columns.append(f"{TITLES[OURS]} (paper)")
    quantities = [("parameters", key, text, False) for key, text in PARAMETER_QUANTITIES]
    quantities += [(entry.task, entry.key, label(entry.task, entry.key), entry.higher_is_better) for entry in METRICS]
    rows = []
    untested: dict[str, None] = {}  # what the unmarked numbers are, for the note (ordered, distinct)
    for baseline in BASELINES:
        for task, key, text, higher in quantities:
            row: list[Cell] = [TITLES[baseline], text]
            for variant in variants:
                if task == "parameters":
                    ours = _count(counts, variant, key)
                    theirs = None if baseline == ST_COLUMN else _count(counts, baseline, key)
                else:
                    ours, theirs = mean_value(metrics.get(variant), task, key), mean_value(metrics.get(baseline), task, key)
                improvement = _num(relative_improvement(ours, theirs, higher), 2, "%")
                interval = intervals.get((variant, baseline, task, key))
                if improvement is not None and interval is not None:
                    shown = [*reported_as(reported, variant, task, single_task),
                             *reported_as(reported, baseline, task, single_task)]
                    if is_tested(shown):
                        improvement = replace(improvement, significant=interval.significant)
                    else:
                        untested[describe_reported(shown)] = None
                row.append(improvement)
                if variant == OURS:
                    row.append(_num(paper.RELATIVE_IMPROVEMENTS[baseline][(task, key)], 2, "%"))
            rows.append(row)
    notes = ["(ours - theirs) / theirs, negated where lower is better (losses, errors, angles, parameters); "
             "this formula reproduces the paper's metric columns (see mbmt.paper).",
             "The paper's total-parameter improvements (26.32 % vs MTAN, 0.20 % vs MT-Net) do not follow from "
             "its own parameter table (27.51 %, 1.81 %); they are shown as published.",
             f"{SIGNIFICANT}: significant at a family-wise error rate of {ALPHA * 100:g} %: the Holm-adjusted "
             f"two-sided bootstrap p of the paired difference on the same test images is below {ALPHA:g}, over the family "
             f"of {_family_text(intervals)} the report tests (see the paired differences table). No mark: "
             "not significant, or not tested. Losses and the median angle are not tested (they are not sums "
             "over images).",
             f"Marks only on numbers of protocol {TESTED_PROTOCOL} with {TESTED_AVERAGING} averaging, the numbers "
             "the paired intervals are of; a number of another protocol or averaging is the mean of other "
             "evaluations (e.g. last_k: validation epochs), which no test here covers.", seeds_note(metrics)]
    notes += [f"Not marked, no test of the numbers shown ({entry}): the intervals are of protocol "
              f"{TESTED_PROTOCOL}, {TESTED_AVERAGING} averaging." for entry in untested]
    return Table("relative_improvements", TABLE_TITLES["relative_improvements"], columns, rows, notes)



def unreachable_note(intervals: Iterable[Interval]) -> list[str]:
    """The note (one, or none) that no interval of a Holm family can be marked significant: its smallest
    reachable adjusted p, family × 2 / (resamples + 1), is at or above ALPHA."""
    intervals = list(intervals)
    family = max((interval.family for interval in intervals), default=1)
    samples = min((interval.samples for interval in intervals if interval.samples), default=None)
    if samples is None or smallest_family_p(samples, family) < ALPHA:
        return []
    return [f"With {samples} resamples no comparison can be significant over a family of {family}: the "
            f"smallest Holm-adjusted p is {family} × 2 / ({samples} + 1) = "
            f"{smallest_family_p(samples, family):.4f}; raise report.bootstrap.samples above "
            f"{round(2 * family / ALPHA) - 1}."]


def paired_table(intervals: Intervals) -> Table:
    """Each task's headline metric: MBMT-Net minus each baseline on the same test images, the seed
    spread of that difference, its paired 95 % bootstrap interval, its bootstrap p unadjusted and
    Holm-adjusted, and whether it is significant (by the adjusted p)."""
    rows = []
    for (variant, baseline, task, key), interval in intervals.items():
        headline = HEADLINE_METRICS.get(task)
        if headline is None or headline.key != key:
            continue
        digits = headline.digits + 1
        higher = headline.higher_is_better
        better = TITLES.get(variant, variant) if (interval.difference > 0) == higher else TITLES[baseline]
        rows.append([TITLES.get(variant, variant), TITLES[baseline], label(task, key),
                     Num(interval.difference, digits), _num(interval.seed_std, digits),
                     Num(interval.low, digits), Num(interval.high, digits),
                     Num(interval.p, 4), _num(interval.p_holm, 4),
                     f"yes: {better} better" if interval.significant else "no", Num(interval.seeds)])
    notes = [
        "difference: MBMT-Net minus the baseline in the metric's unit, from the per-image sums of the test "
        "split (pixel averaging), averaged over the seeds (each seed's MBMT-Net against the same seed's "
        "baseline).",
        "seed std: the sample standard deviation (ddof=1) of the per-seed differences: the spread from training "
        "randomness (one trained model per seed) on the fixed test split; none with one seed.",
        "95 % low / high: percentile interval of a paired bootstrap of the seed-mean difference: the same "
        "resampled test images for both models and every seed (mbmt.reporting.statistics). It covers the "
        "sampling of the test images with the trained models held fixed, not training randomness (that is the "
        "seed std); it is each comparison's own, not adjusted for multiplicity.",
        "p: the two-sided bootstrap p (twice the smaller share of resampled differences at or beyond 0, as "
        "(count + 1) / (resamples + 1)). p (Holm): adjusted by the Holm–Bonferroni method over the family of "
        f"{_family_text(intervals)} the report tests (every MBMT-Net variant × baseline × metric summable "
        f"over images, not only the rows shown here). Significant: p (Holm) < {ALPHA:g}, a family-wise error "
        f"rate of {ALPHA * 100:g} %; the relative improvements' marks use the same adjusted p.",
        "Neither the interval nor the seed std covers the correlation of frames of one scene: the test images "
        "are resampled one by one, as if independent, because MTAN's preprocessed NYUv2 split records no "
        "scene ids; the intervals are likely too narrow.",
        f"The intervals are of the trained models (protocol {TESTED_PROTOCOL}) with {TESTED_AVERAGING} "
        "averaging, whatever evaluate.protocol and evaluate.averaging report.",
    ]
    notes += unreachable_note(intervals.values())
    return Table(
        "paired_differences", TABLE_TITLES["paired_differences"],
        ["MBMT-Net", "versus", "metric", "difference", "seed std", "95 % low", "95 % high", "p", "p (Holm)",
         "significant", "seeds"], rows, notes)


def _family_text(intervals: Intervals) -> str:
    family = max((interval.family for interval in intervals.values()), default=0)
    return f"all {family} paired comparisons" if family > 1 else "the paired comparisons"


def _count(counts: Mapping[str, Mapping[str, int]], name: str, key: str) -> float | None:
    count = counts.get(name)
    return None if count is None else float(count[key])


def _num(number: float | None, digits: int, suffix: str = "") -> Num | None:
    return None if number is None else Num(float(number), digits, suffix)

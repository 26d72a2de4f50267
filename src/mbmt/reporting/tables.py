"""The paper's four tables as data, each measured value beside the published one.

Pure functions of the metrics JSON (DESIGN §3 blocks, paper units) and parameter counts, so
every number can be checked by hand; rendering to Markdown, CSV and HTML is at the end.

"ours" in the paper is MBMT-Net DWA, the partial variant (frozen ST encoders, see mbmt.paper);
the EfficientPS column is each task's single-task model (ST-SS for SS, ST-DE for DE, ...).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mbmt import paper
from mbmt.tasks import TASK_ABBREVIATIONS, TASKS

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
# Digits shown per metric: the paper's precision.
DIGITS = {"loss": 4, "miou": 2, "pix_acc": 2, "abs_err": 4, "rel_err": 4, "mean": 4, "median": 4,
          "within_11_25": 2, "within_22_5": 2, "within_30": 2}
PARAMETER_QUANTITIES = (("trainable", "Trainable #P"), ("total", "Total #P"))
HEADLINE_METRICS = (("semantic", "miou"), ("depth", "abs_err"), ("normal", "mean"))
# Each table's title by its name (the file stem in reports/tables/), the paper's order.
TABLE_TITLES = {
    "headline": "At a glance: each task's headline metric and the trainable parameters",
    "architectures": "Architectures",
    "parameters": "Parameters (trainable / total)",
    "results": "Results on the test split (the paper's 12 metrics)",
    "relative_improvements": "Relative improvements of MBMT-Net (%, positive = MBMT-Net better)",
}


@dataclass(frozen=True)
class Num:
    """A number and the digits it is shown with (CSV keeps it whole)."""

    value: float | int
    digits: int = 2
    suffix: str = ""

    def __str__(self) -> str:
        if isinstance(self.value, int):
            return f"{self.value:,}{self.suffix}"
        return f"{self.value:.{self.digits}f}{self.suffix}"


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
    """The paper's row label with the direction of "better", e.g. "SS mIoU (%) ↑"."""
    for metric_task, metric_key, text, higher in paper.METRICS:
        if (metric_task, metric_key) == (task, key):
            return f"{text} {'↑' if higher else '↓'}"
    raise KeyError((task, key))


def single_task_models(metrics: Mapping[str, Mapping]) -> list[str]:
    """The models whose metrics hold one task: the ST-Nets."""
    return [name for name, result in metrics.items() if sum(task in result for task in TASKS) == 1]


def single_task_column(metrics: Mapping[str, Mapping]) -> dict[str, dict]:
    """The EfficientPS column: each task's block from the model that predicts that task alone."""
    column: dict[str, dict] = {}
    for name in single_task_models(metrics):
        task = next(task for task in TASKS if task in metrics[name])
        if task in column:
            raise ValueError(f"two single-task models predict {task}; the EfficientPS column needs one")
        column[task] = dict(metrics[name][task])
    return column


def with_single_task_column(metrics: Mapping[str, Mapping]) -> dict[str, Mapping]:
    return {ST_COLUMN: single_task_column(metrics), **metrics}


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
        context, backbone, architecture, abbreviation = published[1:] if published else (None,) * 4
        backbones = meta.get("backbones") or []
        measured_backbone = (" + ".join(f"{backbones.count(b)}x {b}" for b in dict.fromkeys(backbones))
                             if backbones else f"SegNet, filters {meta['model'].get('filters')}")
        tasks = "+".join(TASK_ABBREVIATIONS[t] for t in meta["tasks"])
        rows.append([name, abbreviation, context, backbone, architecture, measured_backbone, tasks])
    return Table(
        "architectures", TABLE_TITLES["architectures"],
        ["model", "abbreviation (paper)", "context (paper)", "backbone (paper)", "architecture and tasks (paper)",
         "backbones (ours)", "tasks (ours)"],
        rows,
        ["The paper's table lists six models; the two full MBMT-Net variants appear in its training design "
         "(full training with EfficientNet-b2 and -b5, from ST-pretrained encoders or from scratch).",
         "Backbones (ours) are the timm models the trained files record."],
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


def headline_table(metrics: Mapping[str, Mapping], counts: Mapping[str, Mapping[str, int]]) -> Table:
    """At a glance: each task's headline metric and the trainable parameters, ours beside the paper's.
    The EfficientPS row is the three ST-Nets together (parameters summed: what three tasks take)."""
    metrics = with_single_task_column(metrics)
    single = single_task_models(metrics)
    st_counts = {key: sum(counts[name][key] for name in single if name in counts) for key in ("trainable", "total")}
    st_paper = {key: sum(paper.PARAMETERS[name][key] for name in ("st_ss", "st_de", "st_snp")) for key in ("trainable", "total")}
    columns, rows = ["model"], []
    for task, key in HEADLINE_METRICS:
        columns += [f"{label(task, key)} (ours)", f"{label(task, key)} (paper)"]
    columns += ["trainable #P (ours)", "trainable #P (paper)"]
    for name in metrics:
        if name in single:
            continue
        published = paper.RESULTS.get(name)
        row: list[Cell] = [TITLES.get(name, name)]
        for task, key in HEADLINE_METRICS:
            row += [_num(value(metrics[name], task, key), DIGITS[key]), _num(value(published, task, key), DIGITS[key])]
        ours = st_counts if name == ST_COLUMN else counts.get(name)
        theirs = st_paper if name == ST_COLUMN else paper.PARAMETERS.get(name)
        row += [None if ours is None else Num(int(ours["trainable"])), None if theirs is None else Num(int(theirs["trainable"]))]
        rows.append(row)
    return Table(
        "headline", TABLE_TITLES["headline"], columns, rows,
        ["EfficientPS (ST-Nets): each task's metric from its single-task model; parameters of the three together."],
    )


def results_table(metrics: Mapping[str, Mapping]) -> Table:
    """The paper's 12-metric table: ours beside the paper's for its four columns, then our other models."""
    metrics = with_single_task_column(metrics)
    published_columns = [name for name in paper.RESULTS if name in metrics]
    merged = {ST_COLUMN, *single_task_models(metrics)}
    extra = [name for name in metrics if name not in paper.RESULTS and name not in merged]
    columns = ["task", "metric"]
    for name in published_columns:
        columns += [f"{TITLES[name]} (ours)", f"{TITLES[name]} (paper)"]
    columns += [f"{TITLES.get(name, name)} (ours)" for name in extra]
    rows = []
    for task, key, _, _ in paper.METRICS:
        digits = DIGITS[key]
        row: list[Cell] = [TASK_ABBREVIATIONS[task], label(task, key)]
        for name in published_columns:
            ours, theirs = value(metrics[name], task, key), value(paper.RESULTS[name], task, key)
            row += [_num(ours, digits), _num(theirs, digits)]
        row += [_num(value(metrics[name], task, key), digits) for name in extra]
        rows.append(row)
    return Table(
        "results", TABLE_TITLES["results"], columns, rows,
        ["EfficientPS (ST-Nets): each task's row comes from that task's single-task model.",
         "The paper did not publish MTAN's losses."],
    )


def improvement_table(metrics: Mapping[str, Mapping], counts: Mapping[str, Mapping[str, int]],
                       variants: Sequence[str]) -> Table:
    """The paper's relative improvements of MBMT-Net over MTAN, EfficientPS and MT-Net (percent,
    positive = MBMT-Net better): ours for each MBMT-Net variant in ``variants``, the paper's for
    its MBMT-Net (OURS). Parameters compare single models (none against the three ST-Nets)."""
    metrics = with_single_task_column(metrics)
    columns = ["versus", "quantity"]
    for variant in variants:
        columns.append(f"{TITLES.get(variant, variant)} (ours)")
        if variant == OURS:
            columns.append(f"{TITLES[OURS]} (paper)")
    quantities = [("parameters", key, text, False) for key, text in PARAMETER_QUANTITIES]
    quantities += [(task, key, label(task, key), higher) for task, key, _, higher in paper.METRICS]
    rows = []
    for baseline in BASELINES:
        for index, (task, key, text, higher) in enumerate(quantities):
            row: list[Cell] = [TITLES[baseline], text]
            for variant in variants:
                if task == "parameters":
                    ours = _count(counts, variant, key)
                    theirs = None if baseline == ST_COLUMN else _count(counts, baseline, key)
                else:
                    ours, theirs = value(metrics.get(variant), task, key), value(metrics.get(baseline), task, key)
                row.append(_num(relative_improvement(ours, theirs, higher), 2, "%"))
                if variant == OURS:
                    row.append(_num(paper.RELATIVE_IMPROVEMENTS[baseline][index], 2, "%"))
            rows.append(row)
    return Table(
        "relative_improvements", TABLE_TITLES["relative_improvements"],
        columns, rows,
        ["(ours - theirs) / theirs, negated where lower is better (losses, errors, angles, parameters); "
         "this formula reproduces the paper's metric columns (see mbmt.paper).",
         "The paper's total-parameter improvements (26.32 % vs MTAN, 0.20 % vs MT-Net) do not follow from "
         "its own parameter table (27.51 %, 1.81 %); they are shown as published."],
    )


def _count(counts: Mapping[str, Mapping[str, int]], name: str, key: str) -> float | None:
    count = counts.get(name)
    return None if count is None else float(count[key])


def _num(number: float | None, digits: int, suffix: str = "") -> Num | None:
    return None if number is None else Num(float(number), digits, suffix)


# -- rendering --------------------------------------------------------------------------------

def _numeric_columns(table: Table) -> list[bool]:
    return [any(isinstance(row[i], Num) for row in table.rows) for i in range(len(table.columns))]


def _text(cell: Cell) -> str:
    return "–" if cell is None else str(cell)


def to_markdown(table: Table) -> str:
    def text(cell: Cell) -> str:
        return _text(cell).replace("|", "\\|")

    numeric = _numeric_columns(table)
    lines = [f"## {table.title}", "",
             "| " + " | ".join(table.columns) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(text(cell) for cell in row) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    def raw(cell: Cell):
        if cell is None:
            return ""
        return cell.value if isinstance(cell, Num) else cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([raw(cell) for cell in row] for row in table.rows)
    return out.getvalue()


# Self-contained, so that Snakemake's HTML report shows the table as it is (it embeds each file).
HTML_STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse}"
              "th,td{border:1px solid #ccc;padding:3px 8px}th{background:#eee}td.num{text-align:right}")


def to_html(table: Table) -> str:
    numeric = _numeric_columns(table)

    def row(cells, tag: str) -> str:
        opening = [f'<{tag} class="num">' if tag == "td" and n else f"<{tag}>" for n in numeric]
        return "<tr>" + "".join(f"{opening[i]}{html.escape(_text(cell))}</{tag}>" for i, cell in enumerate(cells)) + "</tr>"

    title = html.escape(table.title)
    lines = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
             f"<style>{HTML_STYLE}</style></head><body>", f"<h2>{title}</h2>", "<table>",
             f"<thead>{row(table.columns, 'th')}</thead>", "<tbody>", *(row(r, "td") for r in table.rows),
             "</tbody></table>"]
    if table.notes:
        lines += ["<ul>", *(f"<li>{html.escape(note)}</li>" for note in table.notes), "</ul>"]
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"

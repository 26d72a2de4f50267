"""reports/README.md: the index a reader opens first — what was run, the tables, the figures, the provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mbmt import anchors
from mbmt.reporting.render import to_markdown
from mbmt.reporting.tables import Table

RUN_TITLE = "What was run"


def facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What was run, as (fact, value): the index opens with them, tables/run.* holds them."""
    dataset = summary["dataset"]
    splits = ", ".join(f"{split} {entry['count']}" for split, entry in dataset["splits"].items())
    height, width = dataset["resolution"]
    return [
        ("Profile", ", ".join(summary["profiles"])),
        ("Dataset", f"{dataset['source']} ({_origin(dataset)}), {height}×{width} px; images per split: {splits}"),
        ("Evaluated on", summary["evaluation"]),
        ("Seeds", f"{', '.join(map(str, summary['seeds']))} (n={len(summary['seeds'])}: "
                  + ("one trained model per model, no spread)" if len(summary["seeds"]) == 1 else
                     "one trained model per model and seed; ours: mean ± sample std)")),
        ("Protocol", summary["protocol"]),
        ("Hardware", f"trained on {', '.join(summary['training_hardware']) or 'unknown'}; "
                     f"evaluated on {', '.join(summary['evaluation_hardware']) or 'unknown'}"),
        ("Code", f"git {summary['git_revision']} (report written {summary['date']})"),
        ("Environment", summary.get("environment") or "not recorded"),
    ]


def _origin(dataset: Mapping[str, Any]) -> str:
    """Where the dataset came from; for a Hub mirror, its repository and revision."""
    mirror = dataset.get("hub")
    if mirror:
        return f"{dataset['origin']}: Hugging Face Hub dataset {mirror['repo_id']} at revision {mirror['revision']}"
    return str(dataset["origin"])


def caution(summary: Mapping[str, Any]) -> str | None:
    """Why the numbers do not compare with the paper's; None when they come from the paper's setting."""
    if summary["profiles"] == ["paper"] and summary["dataset"]["source"] == "nyuv2":
        return None
    return (f"These numbers come from profile {', '.join(summary['profiles'])} on the "
            f"{summary['dataset']['source']} dataset: they show that the whole pipeline runs and how its "
            "outputs look, not how MBMT-Net compares with the paper. Run snakemake --cores all (profile "
            "paper, MTAN's NYUv2) for comparable numbers.")


def run_table(summary: Mapping[str, Any]) -> Table:
    """The facts and whether the numbers compare with the paper's (Snakemake's HTML report shows it)."""
    warning = caution(summary)
    comparable = f"No. {warning}" if warning else "Yes: the paper's profile on MTAN's NYUv2."
    return Table("run", RUN_TITLE, ["fact", "value"], [[*fact] for fact in facts(summary)]
                 + [["Comparable with the paper", comparable]])


def _facts(summary: Mapping[str, Any]) -> str:
    return "\n".join(f"- **{fact}**: {value}" for fact, value in facts(summary))


def _caution(summary: Mapping[str, Any]) -> str:
    warning = caution(summary)
    return f"> **Not the paper's setting.** {warning}\n\n" if warning else ""


def _provenance_table(models: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str]) -> str:
    lines = ["| model | seed | metrics file (md5) | per-image file (md5) | model file (md5) | "
             "metrics from this model file | evaluated on | trained | hardware (training) |",
             "| --- | ---: | --- | --- | --- | --- | --- | --- | --- |"]
    for name, model in models.items():
        for entry in model["runs"]:
            evaluation, training = entry["evaluation"], entry["training"]
            trained = (f"{training['epochs']} epochs, {training['train_seconds']:.0f} s"
                       if training.get("epochs") is not None and training.get("train_seconds") is not None else "–")
            hardware = ((training.get("provenance") or {}).get("hardware")) or "–"
            files = " | ".join(f"`{entry[kind]['path']}` `{entry[kind]['md5']}`"
                               for kind in ("metrics_file", "per_image_file", "model_file"))
            lines.append(
                f"| {titles.get(name, name)} | {entry['seed']} | {files} "
                f"| {'yes' if entry['metrics_match_model_file'] else '**no: re-run evaluate**'} "
                f"| {evaluation['split']}, {evaluation['images']} images, {evaluation['averaging']} averaging "
                f"| {trained} | {hardware} |")
    return "\n".join(lines) + "\n"


def render(summary: Mapping[str, Any], tables: Sequence[Table], figures: Sequence[tuple[str, str, str]],
           models: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str]) -> str:
    """The index. ``figures``: (section, caption, path relative to reports/)."""
    parts = [
        "# MBMT-Net reproduction: report\n",
        "The paper's tables and figures (Ciubotariu, *MBMT-Net: A Multi-Backbone, Multi-Task Deep CNN*, "
        "WeADL 2022), each measured value beside the published one, as written by `mbmt report` from this "
        "run's pipeline outputs. Every file below is regenerated by `snakemake` or `dvc repro`.\n",
        _facts(summary) + "\n",
        _caution(summary),
        "Units as in the paper: percent for mIoU, pixel accuracy and the within-angle rates; metres for "
        f"depth; degrees for angles. Losses and errors are averaged per {summary['averaging']} "
        "(the other averaging is in each metrics/<model>/seed<S>.json). ↑: higher is better, ↓: lower is better. "
        "Ours: the mean ± the sample standard deviation over the seeds; the paired differences table and the "
        "marks in the relative improvements say which differences are significant at a family-wise 5 % "
        "(Holm-corrected bootstrap p; marks only on the tested numbers: protocol final, pixel averaging). "
        "The intervals cover the sampling of the test images, the ± the seeds; neither covers the "
        "correlation of frames of one scene.\n",
        anchors.EXPLANATION + "\n",
        "## Tables\n",
        "\n".join(f"- [{t.title}](tables/{t.name}.md) ([CSV](tables/{t.name}.csv))" for t in tables) + "\n",
    ]
    parts += [to_markdown(t).replace("## ", "### ", 1) for t in tables]
    parts.append("## Figures\n")
    section = None
    for heading, caption, path in figures:
        if heading != section:
            parts.append(f"### {heading}\n")
            section = heading
        parts.append(f"![{caption}]({path})\n\n*{caption}*\n")
    parts += [
        "## Provenance\n",
        "Where every number comes from. An md5 is the hash DVC records for the file in `dvc.lock`, so "
        "`grep <md5> dvc.lock` finds the pipeline revision that produced it; "
        f"the processed dataset's manifest is `{summary['dataset']['manifest']['path']}` "
        f"(md5 `{summary['dataset']['manifest']['md5']}`). All details: [provenance.json](provenance.json).\n",
        _provenance_table(models, titles),
    ]
    return "\n".join(part for part in parts if part)

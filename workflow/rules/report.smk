# The paper's tables and figures, measured beside published, in reports/. Snakemake's HTML report
# (snakemake --report reports/report.html, docs/workflow.md) shows the outputs flagged report(...),
# each file sorted by its name into a category, with the captions of workflow/report/.

from mbmt.reporting.document import RUN_TITLE
from mbmt.reporting.tables import OURS, TABLE_TITLES, TITLES

REPORT_TABLE_CATEGORIES = {"run": "What was run", "architectures": "Architectures and parameters",
                           "parameters": "Architectures and parameters"}  # the rest: "Results tables"


def report_table_category(wildcards):
    return REPORT_TABLE_CATEGORIES.get(wildcards.table, "Results tables")


def report_table_labels(wildcards):
    # A study table (reports/tables/study_<name>*.html) is labelled by its name.
    return {"table": {**TABLE_TITLES, "run": RUN_TITLE}.get(wildcards.table, wildcards.table)}


def report_figure_category(wildcards):
    if "study" in wildcards.keys():
        return "Studies"
    return "Training curves" if "task" in wildcards.keys() else "Predictions"


def report_figure_subcategory(wildcards):
    if "study" in wildcards.keys():
        return f"Study {wildcards.study}"
    if "split" not in wildcards.keys():
        return None
    return "Real NYUv2 frames" if wildcards.split == paths.REAL_SPLIT else f"{wildcards.split.capitalize()} split"


def report_figure_labels(wildcards):
    if "study" in wildcards.keys():
        what = "per-task Δm of each variant" if wildcards.plot == "tasks" else "trade-off between two tasks"
        return {"figure": f"study {wildcards.study}: {what}"}
    if "task" in wildcards.keys():
        return {"figure": f"{wildcards.task}: training loss and validation metric"}
    if wildcards.kind == "qualitative":
        return {"figure": f"{TITLES[OURS]}: every task on the first images"}
    return {"figure": "every model on the first image"}


rule report:
    input:
        code=code("report"),
        results=[str(path) for name, seed in dag.job_runs(config) for path in dag.evaluate_outputs(name, seed)],
        models=[model_file(name, seed) for name, seed in dag.job_runs(config)],
        live=[live_dir(name, seed) for name, seed in dag.job_runs(config)],
        data=[split_file("test"), str(paths.manifest_file())],
        real=[split_file(paths.REAL_SPLIT)] if config["data"]["real_images"] else [],
    output:
        index=str(paths.REPORT_INDEX),
        tables=report(
            directory(str(paths.REPORT_TABLES_DIR)),
            patterns=["{table}.html"],
            caption="../report/table.rst",
            category=report_table_category,
            labels=report_table_labels,
        ),
        figures=report(
            directory(str(paths.REPORT_FIGURES_DIR)),
            patterns=[
                "training_{task}.png",
                "{kind,qualitative|comparison}_{split}.png",
                "study_{study}_{plot,tasks|tradeoff}.png",
            ],
            caption="../report/figure.rst",
            category=report_figure_category,
            subcategory=report_figure_subcategory,
            labels=report_figure_labels,
        ),
        provenance=report(
            str(paths.REPORT_PROVENANCE),
            caption="../report/provenance.rst",
            category="What was run",
            labels={"table": "Provenance of every number (JSON)"},
        ),
    params:
        tracked=tracked_params("report"),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/results/report.tsv"
    threads: 2
    shell:
        mbmt("report") + TO_LOG

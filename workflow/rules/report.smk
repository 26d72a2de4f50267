# The paper's tables and figures, measured beside published, in reports/. Snakemake's HTML report
# (snakemake --report reports/report.html, docs/workflow.md) shows the outputs flagged report(...),
# each file sorted by its name into a category, with the captions of workflow/report/.
# Its category and label functions are in common.smk (snakemake --lint: functions in one place).


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule report:
    input:
        code=code("report"),
        results=[
            str(path)
            for name, seed in PLAN.job_runs
            for path in evaluate_outputs(name, seed)
        ],
        models=[model_file(name, seed) for name, seed in PLAN.training_runs],
        live=[live_dir(name, seed) for name, seed in PLAN.training_runs],
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
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/results/report.tsv"
    threads: 2
    params:
        tracked=tracked_params("report"),
    shell:
        mbmt("report") + TO_LOG

# The paper's tables and figures, measured beside published, in reports/.


rule report:
    input:
        code=code("report"),
        metrics=[str(paths.metrics_file(name)) for name in MODELS],
        models=[model_file(name) for name in MODELS],
        live=[live_dir(name) for name in MODELS],
        data=[split_file("test"), str(paths.manifest_file())],
        real=[split_file(paths.REAL_SPLIT)] if config["data"]["real_images"] else [],
    output:
        index=str(paths.REPORT_INDEX),
        tables=directory(str(paths.REPORT_TABLES_DIR)),
        figures=directory(str(paths.REPORT_FIGURES_DIR)),
        provenance=str(paths.REPORT_PROVENANCE),
    params:
        tracked=tracked_params("report"),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/results/report.tsv"
    threads: 2
    shell:
        mbmt("report") + TO_LOG

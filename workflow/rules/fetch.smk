# Get the raw dataset (MTAN's NYUv2 download, a local copy, or the synthetic scenes) into data/raw/.

# Downloads run where the workflow was started: cluster nodes often have no internet access.
localrules:
    fetch,


rule fetch:
    input:
        code=code("fetch"),
    output:
        directory(str(paths.RAW_DIR)),
    params:
        tracked=tracked_params("fetch"),
    log:
        "logs/fetch.log",
    benchmark:
        "benchmarks/results/fetch.tsv"
    threads: 1
    shell:
        mbmt("fetch") + TO_LOG

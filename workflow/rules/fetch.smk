# Get the raw dataset (MTAN's NYUv2 download, a local copy, or the synthetic scenes) into data/raw/.


# Downloads run where the workflow was started: cluster nodes often have no internet access.
localrules:
    fetch,


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule fetch:
    input:
        code=code("fetch"),
    output:
        directory(str(paths.RAW_DIR)),
    log:
        "logs/fetch.log",
    benchmark:
        "benchmarks/results/fetch.tsv"
    threads: 1
    params:
        tracked=tracked_params("fetch"),
    shell:
        mbmt("fetch") + TO_LOG

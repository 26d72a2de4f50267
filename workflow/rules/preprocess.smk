# Validate data/raw/ and write one HDF5 file per split plus the manifest to data/processed/.


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule preprocess:
    input:
        code=code("preprocess"),
        raw=str(paths.RAW_DIR),
        # The folder of params data.real_images, when set (mbmt dag declares it in dvc.yaml too).
        real_images=(
            [config["data"]["real_images"]] if config["data"]["real_images"] else []
        ),
    output:
        processed_files(),
    log:
        "logs/preprocess.log",
    benchmark:
        "benchmarks/results/preprocess.tsv"
    threads: 2
    params:
        tracked=tracked_params("preprocess"),
    shell:
        mbmt("preprocess") + TO_LOG

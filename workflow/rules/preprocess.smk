# Validate data/raw/ and write one HDF5 file per split plus the manifest to data/processed/.


rule preprocess:
    input:
        code=code("preprocess"),
        raw=str(paths.RAW_DIR),
        # The folder of params data.real_images, when set (mbmt dag declares it in dvc.yaml too).
        real_images=[config["data"]["real_images"]] if config["data"]["real_images"] else [],
    output:
        processed_files(),
    params:
        tracked=tracked_params("preprocess"),
    log:
        "logs/preprocess.log",
    benchmark:
        "benchmarks/results/preprocess.tsv"
    threads: 2
    shell:
        mbmt("preprocess") + TO_LOG

# Evaluate each trained model on params evaluate.split -> metrics/<model>.json.


rule evaluate:
    input:
        code=code("evaluate"),
        model=model_file(),
        split=split_file(config["evaluate"]["split"]),
    output:
        str(paths.metrics_file("{model}")),
    params:
        tracked=tracked_params("evaluate"),
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "benchmarks/results/evaluate/{model}.tsv"
    wildcard_constraints:
        model="|".join(MODELS),
    threads: 4
    resources:
        gpu=1,
    shell:
        mbmt("evaluate", "{wildcards.model}") + TO_LOG

# Evaluate each trained model (each seed's) on params evaluate.split -> metrics/<model>/seed<seed>.json.


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule evaluate:
    input:
        code=code("evaluate"),
        model=evaluated_model,
        split=split_file(config["evaluate"]["split"]),
    output:
        [str(path) for path in evaluate_outputs("{model}", "{seed}")],
    log:
        "logs/evaluate/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/results/evaluate/{model}/seed{seed}.tsv"
    threads: 4
    resources:
        gpu=1,
        gpu_mem_gb=6,  # the default profile sets it too (profiles/default/config.yaml)
    params:
        tracked=tracked_params("evaluate"),
    shell:
        GPU_REQUEST
        + mbmt("evaluate", "{wildcards.model}", "--seed", "{wildcards.seed}")
        + TO_LOG

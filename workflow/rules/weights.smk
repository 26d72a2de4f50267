# Get the ImageNet weights of each backbone that a model with pretrained: true starts from into
# data/weights/ (Hugging Face Hub, its cache, or params backbone_weights), one job per backbone.


# Downloads run where the workflow was started, like fetch: cluster nodes often have no internet.
localrules:
    weights,


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule weights:
    input:
        code=code("weights"),
    output:
        [str(path) for path in weights_outputs("{backbone}")],
    log:
        "logs/weights/{backbone}.log",
    benchmark:
        "benchmarks/results/weights/{backbone}.tsv"
    threads: 1
    params:
        tracked=tracked_params("weights"),
    shell:
        mbmt("weights", "{wildcards.backbone}") + TO_LOG

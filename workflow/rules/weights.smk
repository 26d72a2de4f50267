# Get the ImageNet weights of each backbone that a model with pretrained: true starts from into
# data/weights/ (Hugging Face Hub, its cache, or params backbone_weights), one job per backbone.

# Downloads run where the workflow was started, like fetch: cluster nodes often have no internet.
localrules:
    weights,


rule weights:
    input:
        code=code("weights"),
    output:
        [str(path) for path in dag.weights_outputs("{backbone}")],
    params:
        tracked=tracked_params("weights"),
    log:
        "logs/weights/{backbone}.log",
    benchmark:
        "benchmarks/results/weights/{backbone}.tsv"
    threads: 1
    shell:
        mbmt("weights", "{wildcards.backbone}") + TO_LOG

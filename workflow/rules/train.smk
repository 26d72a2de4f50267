# Train each model of params `models` once per seed of params `seeds`: the ST-Nets, MT-Net, MBMT-Net trained from scratch and
# MTAN straight from the data (rule train); the MBMT-Net variants whose encoders start from
# trained ST-Nets (params init_from) after those ST-Nets of the same seed (rule train_from_st).


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
rule train:
    input:
        unpack(training_inputs),
    output:
        model=model_file(),
        live=directory(live_dir()),
    log:
        "logs/train/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/results/train/{model}/seed{seed}.tsv"
    wildcard_constraints:
        model="|".join(FROM_DATA),
    # The ST-Nets first: the MBMT-Net variants with init_from wait for them, so on a few cores
    # (the CPU demo: two jobs at a time) they start the longest trainings early (docs/workflow.md).
    priority: training_priority
    threads: 8
    resources:
        gpu=1,
        gpu_mem_gb=12,  # the default profile sets it too (profiles/default/config.yaml)
    params:
        tracked=tracked_params("train"),
    shell:
        GPU_REQUEST
        + training_launcher()
        + mbmt("train", "{wildcards.model}", "--seed", "{wildcards.seed}")
        + TO_LOG


# Software: the one locked environment every rule runs in (requirements/, hash-checked; the stage's
# result-affecting packages are its params), not a conda env or container: docs/environment.md.
use rule train as train_from_st with:
    wildcard_constraints:
        model="|".join(FROM_ST),

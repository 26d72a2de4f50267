# Shared by the rules: the stage command line, the params keys and the code each stage
# depends on, and the input functions, from the plan and stage definitions `mbmt dag` writes
# dvc.yaml from (src/mbmt/plan.py, src/mbmt/stage_specs.py; tests/test_dag.py compares the two
# front ends).

import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from mbmt import environment, paths
from mbmt.config import validate, validate_backbones
from mbmt.plan import TRAINING_DATA, Plan, evaluate_outputs, weights_outputs
from mbmt.stage_specs import code_files, environment_params
from mbmt.errors import MbmtError, ParamsError
from mbmt.reporting.document import RUN_TITLE
from mbmt.reporting.tables import OURS, TABLE_TITLES, TITLES
from mbmt.stages.train import planned_training
from mbmt.training.cost import cpu_training_refusal

# The code each stage runs is an input (Snakemake's code trigger sees only the shell text), so
# editing it re-runs the stage; mbmt.stage_specs lists it once for both front ends and the trainer.
SRC = Path("src/mbmt")


def code(stage):
    """The stage's code files as project paths (src/mbmt/...)."""
    return [str(path) for path in code_files(stage, SRC)]


def canonical(value):
    """``value`` with mappings sorted by key: Snakemake compares params by repr, DVC by value."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def tracked_params(stage):
    """A ``params:`` function giving {key: value} for the params keys of the job (mbmt.plan.Plan.params_keys),
    and the locked versions of the packages that can change what the stage computes (from
    requirements/base.txt, as dvc.yaml reads them from requirements/stages.yaml: mbmt.environment),
    so that a lock change moving one of them re-runs the stage."""
    packages = canonical(environment_params(stage))

    def values(wildcards):
        # A study job's keys include its variant's override; the report's, the studies.
        keys = PLAN.params_keys(stage, getattr(wildcards, "model", None))
        # Snakemake's lookup walks the config by a dpath: the params key data.height is data/height
        return {
            key: canonical(lookup(dpath=key.replace(".", "/"), within=config))
            for key in keys
        } | packages

    return values


def param_files():
    """The parameter files the stage commands merge, as Snakemake merged its config."""
    if workflow.config_settings.config:
        raise WorkflowError(
            "--config KEY=VALUE changes Snakemake's config but not what the stage commands read "
            "(parameter files): put the values in a preset file and pass it with --configfile FILE"
        )
    presets = [os.path.relpath(path) for path in workflow.overwrite_configfiles]
    base = (
        []
        if workflow.config_settings.replace_workflow_config
        else [str(paths.PARAMS_FILE)]
    )
    return base + presets


PARAM_FILES = param_files()
# The schema and the backbone names, before any job runs, in the words of `mbmt config` (a
# WorkflowError would wrap them in Snakemake's traceback lines).
try:
    validate(config, source=" + ".join(PARAM_FILES))
    validate_backbones(config, source=" + ".join(PARAM_FILES))
except ParamsError as exc:
    print(f"snakemake: error: {exc}", file=sys.stderr)
    sys.exit(1)

# The plan of the params, built once: the jobs (models, seeds, the studies' jobs) the rules use.
PLAN = Plan(config)
# Every job evaluated, the studies' jobs (params studies: mbmt.plan) named as models. The MBMT-Net
# variants whose encoders start from trained ST-Nets (params init_from) train after those ST-Nets
# (rule train_from_st); every other trained job trains straight from the data (rule train). A
# study job of a variant that changes only `evaluate` is in neither: it evaluates another job's
# training (PLAN.training).
MODELS = PLAN.job_names
FROM_ST = PLAN.trained_from_st
FROM_DATA = PLAN.trained_from_data

# Every model trains and is evaluated once per seed (params seeds), as separate jobs.
SEEDS = PLAN.seeds


# What a wildcard may stand for, in every rule: the models and seeds of the params and the
# backbones that need ImageNet weights ("(?!)", matching nothing, when none does). Rules train and
# train_from_st narrow {model} further, each to the models it trains.
wildcard_constraints:
    model="|".join(MODELS),
    seed="|".join(map(str, SEEDS)),
    backbone="|".join(map(re.escape, PLAN.imagenet_backbones)) or "(?!)",


# Without presets the commands read params.yaml by default and are exactly dvc.yaml's.
PARAM_OPTIONS = (
    "".join(f" --params {shlex.quote(f)}" for f in PARAM_FILES)
    if PARAM_FILES != [str(paths.PARAMS_FILE)]
    else ""
)
# Appended to every command: the job's output goes to its log file.
TO_LOG = " > {log} 2>&1"
# Put before the train and evaluate commands: the job's gpu_mem_gb request, which `mbmt` claims on
# the GPU it places itself on when the node has several (mbmt.gpus; dvc.yaml's commands, run one at
# a time, use the same requests by default).
GPU_REQUEST = "MBMT_GPU_MEM_GB={resources.gpu_mem_gb} "


def mbmt(stage, *args):
    """The command line of stage ``stage`` (dvc.yaml's cmd) plus the presets' --params options."""
    return " ".join(["mbmt", stage, *args]) + PARAM_OPTIONS


def training_launcher():
    """The prefix that starts each training as one torch.distributed run of several processes
    (docs/workflow.md, "One training on several GPUs or nodes"): MBMT_TRAIN_RANKS_PER_NODE
    processes on each of MBMT_TRAIN_NODES nodes (both 1 by default: no prefix, dvc.yaml's
    command). On one node torchrun starts them; on several, one torchrun per node through srun in
    the Slurm job (profiles/slurm asks for the nodes), meeting at the job's first node. Read from
    the environment, which Slurm jobs inherit, so a job's Snakemake builds the same command.
    """
    nodes = int(os.environ.get("MBMT_TRAIN_NODES") or 1)
    ranks = int(os.environ.get("MBMT_TRAIN_RANKS_PER_NODE") or 1)
    if nodes == 1 and ranks == 1:
        return ""
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {ranks} -m "
    return (
        f"srun --nodes {nodes} --ntasks-per-node 1 torchrun --nnodes {nodes} --nproc-per-node {ranks} "
        "--rdzv-id $SLURM_JOB_ID --rdzv-backend c10d "
        "--rdzv-endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1):29500 -m "
    )


def model_file(name="{model}", seed="{seed}"):
    return str(paths.model_file(name, seed))


def live_dir(name="{model}", seed="{seed}"):
    return str(paths.live_dir(name, seed))


def split_file(split):
    return str(paths.split_file(split))


def processed_files():
    """preprocess's files: the splits, the manifest and, when params data.real_images is set, real.h5."""
    return [str(path) for path in PLAN.processed_files]


def training_inputs(wildcards):
    """train / train_from_st: the code, the data, the ST-Nets of the model's init_from (same seed)
    and the ImageNet weight files it starts from."""
    return {
        "code": code("train"),
        "data": [str(path) for path in TRAINING_DATA],
        "init": [
            model_file(name, wildcards.seed) for name in PLAN.init_from(wildcards.model)
        ],
        "weights": [str(path) for path in PLAN.model_weights(wildcards.model)],
    }


def evaluated_model(wildcards):
    """evaluate: the model file of the job that trains the evaluated one (itself, unless it is a
    study job of a variant that changes only `evaluate`: PLAN.training)."""
    return model_file(PLAN.training(wildcards.model), wildcards.seed)


def refuse_environment_drift():
    """Called first by onstart (workflow/rules/dvc.smk), before any job: stop a run whose installed
    environment differs from the lock (a locked package missing or at another version), with the
    message each `mbmt` stage gives (mbmt.environment.check), unless MBMT_ENV_DRIFT=allow.
    """
    try:
        environment.check()
    except MbmtError as exc:
        raise WorkflowError(str(exc)) from None


def refuse_unasked_cpu_training():
    """Called first by onstart (workflow/rules/dvc.smk), before any job: stop a local run that would
    train for hours on the CPU because no GPU is visible (train.device: auto), with the one message
    `mbmt train` gives (mbmt.training.cost). On a cluster the jobs run elsewhere: each `mbmt train`
    asks on its node."""
    if not workflow.local_exec:
        return
    if not any(
        job.rule.name in ("train", "train_from_st")
        for job in workflow.dag.needrun_jobs()
    ):
        return
    message = cpu_training_refusal(
        planned_training(config), source=" + ".join(PARAM_FILES)
    )
    if message:
        raise WorkflowError(message)


# Snakemake's HTML report (workflow/rules/report.smk): each output file's category and labels.
REPORT_TABLE_CATEGORIES = {
    "run": "What was run",
    "architectures": "Architectures and parameters",
    "parameters": "Architectures and parameters",
}  # the rest: "Results tables"


def report_table_category(wildcards):
    return REPORT_TABLE_CATEGORIES.get(wildcards.table, "Results tables")


def report_table_labels(wildcards):
    # A study table (reports/tables/study_<name>*.html) is labelled by its name.
    return {
        "table": {**TABLE_TITLES, "run": RUN_TITLE}.get(
            wildcards.table, wildcards.table
        )
    }


def report_figure_category(wildcards):
    if "study" in wildcards.keys():
        return "Studies"
    return "Training curves" if "task" in wildcards.keys() else "Predictions"


def report_figure_subcategory(wildcards):
    if "study" in wildcards.keys():
        return f"Study {wildcards.study}"
    if "split" not in wildcards.keys():
        return None
    return (
        "Real NYUv2 frames"
        if wildcards.split == paths.REAL_SPLIT
        else f"{wildcards.split.capitalize()} split"
    )


def report_figure_labels(wildcards):
    if "study" in wildcards.keys():
        what = (
            "per-task Δm of each variant"
            if wildcards.plot == "tasks"
            else "trade-off between two tasks"
        )
        return {"figure": f"study {wildcards.study}: {what}"}
    if "task" in wildcards.keys():
        return {"figure": f"{wildcards.task}: training loss and validation metric"}
    if wildcards.kind == "qualitative":
        return {"figure": f"{TITLES[OURS]}: every task on the first images"}
    return {"figure": "every model on the first image"}


def training_priority(wildcards):
    """A training's priority: the single-task models, which the MBMT-Net variants with init_from
    start from, above every other training, and trainings above evaluations (0)."""
    entry = config["models"].get(wildcards.model, {})
    return 2 if entry.get("arch") == "st" else 1

"""The stage definitions both front ends share: the models and which train after which ST-Nets,
each stage's data inputs and outputs, the params keys and the code each stage depends on.

``workflow/rules/common.smk`` declares them as Snakemake inputs, outputs and params; ``mbmt dag``
writes ``dvc.yaml`` from them (render_dvc_yaml; tests/test_dag.py compares the two as each tool
loads them), and the trainer hashes the same code files into a run's identity
(mbmt.training.checkpoint), so an edit that re-runs a stage also starts a fresh run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mbmt import environment, paths
from mbmt.config import EXECUTION_PARAMS, TRAIN_KEYS, TRAIN_RESULT_KEYS, WEIGHTING, fingerprint, variant_params
from mbmt.config import imagenet_backbones as entry_imagenet_backbones
from mbmt.tasks import HEADLINE_METRICS, TASK_TITLES, TASKS

PACKAGE_DIR = Path(__file__).resolve().parent

# Params keys each stage depends on, at key granularity; "{model}" is the job's model. A change
# of any other key re-runs nothing. The train keys are the result keys of mbmt.config.TRAIN_KEYS,
# the same that make a run's identity (mbmt.training.checkpoint); its execution keys choose where
# and how fast, not what is computed, and are left out. A job's seed is on its command line (--seed), not a params
# key: adding a seed to params `seeds` adds jobs and leaves the other seeds' jobs as they are.
STAGE_PARAMS = {
    "fetch": ["data.source", "data.height", "data.width", "data.nyuv2", "data.synthetic"],
    # Which backbones need weights is in the jobs (one per backbone), not a params key: a change of
    # another model's entry must not touch the weight files that every training depends on.
    "weights": ["backbone_weights"],
    "preprocess": ["data.source", "data.height", "data.width", "data.real_images"],
    # The train stage also reads train's execution keys (config.TRAIN_EXECUTION_KEYS) and deliberately does not
    # declare them: they change where and how fast, not what is computed, so a change re-runs no training and a
    # run resumes under another value (docs/workflow.md). tests/test_stage_reads.py ties both lists to the reads.
    "train": [f"train.{key}" for key in TRAIN_RESULT_KEYS] + ["decoder", "models.{model}"],
    # Evaluation runs as config.ExecutionSettings says (keys of params `train`): declared, as every key it reads.
    "evaluate": ["evaluate", *EXECUTION_PARAMS],
    # data.real_images: whether the report draws the real frames (real.h5); seeds: what it averages.
    "report": ["report", "data.real_images", "seeds"],
}

# The code each stage runs, relative to the package (a folder stands for every file in it).
# Infrastructure (cli, config, dag, environment, locking, paths, io, errors, provenance) decides how a stage runs, not
# what it computes, and is left out so that e.g. a new CLI option does not retrain every model.
STAGE_CODE = {
    "fetch": ["stages/fetch.py", "data/__init__.py", "data/archives.py", "data/fetch.py", "data/hdf5.py",
              "data/hub_mirror.py", "data/mtan_layout.py", "data/settings.py", "data/synthetic", "data/transfer.py",
              "hub.py", "tasks.py"],
    "weights": ["stages/weights.py", "hub.py", "models", "tasks.py"],
    "preprocess": ["stages/preprocess.py", "data/__init__.py", "data/archives.py", "data/fetch.py", "data/hdf5.py",
                   "data/hub_mirror.py", "data/mtan_layout.py", "data/nyu_raw.py", "data/preprocess.py",
                   "data/settings.py", "data/transfer.py", "hub.py", "tasks.py"],
    "train": ["stages/train.py", "data/__init__.py", "data/augment.py", "data/dataset.py",
              "data/device_split.py", "data/hdf5.py", "device.py", "evaluation", "hub.py", "losses.py",
              "metrics.py", "models", "tasks.py", "training"],
    "evaluate": ["stages/evaluate.py", "data/__init__.py", "data/augment.py", "data/dataset.py",
                 "data/hdf5.py", "device.py", "evaluation", "hub.py", "losses.py", "metrics.py", "models", "tasks.py"],
    "report": ["stages/report.py", "anchors.py", "data/__init__.py", "data/hdf5.py", "device.py", "evaluation",
               "hub.py", "losses.py", "metrics.py", "models", "paper.py", "predict.py", "reporting", "tasks.py", "visual.py"],
}

# Files DVC does not hash inside a folder dependency (.dvcignore lists the same).
IGNORED_NAMES = {"__pycache__"}
IGNORED_SUFFIXES = {".pyc"}


def code_files(stage: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The files of STAGE_CODE[stage] under ``package_dir``, folders expanded as DVC hashes them."""
    files = []
    for entry in STAGE_CODE[stage]:
        path = package_dir / entry
        if path.is_dir():
            files += [f for f in sorted(path.rglob("*")) if f.is_file()
                      and IGNORED_NAMES.isdisjoint(f.relative_to(path).parts)
                      and f.suffix not in IGNORED_SUFFIXES]
        else:
            files.append(path)
    return files


def code_digest(stage: str, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the stage's code files (their package-relative names and contents)."""
    digest = hashlib.sha256()
    for path in code_files(stage, package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# --- The DAG of a params mapping ---------------------------------------------------------------

def models(params: Mapping) -> list[str]:
    return list(params["models"])


def seeds(params: Mapping) -> list[int]:
    """Every model trains and is evaluated once per seed, as separate jobs."""
    return list(params["seeds"])


def job_key(model: str, seed: int) -> str:
    """What names a per-model, per-seed job within its stage, as DVC names a matrix's stages."""
    return f"{model}-{seed}"


def job_name(stage: str, model: str, seed: int) -> str:
    """A per-model, per-seed job's name, as DVC names its stage (train@st_ss-0)."""
    return f"{stage}@{job_key(model, seed)}"


def job_names(params: Mapping) -> list[str]:
    """Every model a train and an evaluate job run per seed: params `models`, then the studies' jobs."""
    return models(params) + list(study_jobs(params))


def init_from(params: Mapping, name: str) -> list[str]:
    """The ST-Nets (their jobs, for a study job) whose trained encoders start job ``name`` (params
    init_from; [] if none). Each seed's training starts from the same seed's ST-Nets."""
    return list(job_params(params, name)["models"][name].get("init_from") or [])


def trained_from_st(params: Mapping) -> list[str]:
    """The jobs that train after the ST-Nets of their init_from (stage train_from_st)."""
    return [name for name in job_names(params) if init_from(params, name)]


def trained_from_data(params: Mapping) -> list[str]:
    """The jobs that train straight from the data (stage train)."""
    return [name for name in job_names(params) if not init_from(params, name)]


def model_imagenet_backbones(params: Mapping, name: str) -> list[str]:
    """The backbones job ``name`` starts from ImageNet weights (mbmt.config.imagenet_backbones)."""
    return entry_imagenet_backbones(job_params(params, name)["models"][name])


def imagenet_backbones(params: Mapping) -> list[str]:
    """Every backbone some job starts from ImageNet weights: one weights job each."""
    return sorted({backbone for name in job_names(params) for backbone in model_imagenet_backbones(params, name)})


def weights_outputs(backbone: str) -> list[Path]:
    """What the weights job of ``backbone`` writes (``backbone`` may be a template): the file and its record."""
    return [paths.weights_file(backbone), paths.weights_record(backbone)]


def model_weights(params: Mapping, name: str) -> list[Path]:
    """The ImageNet weight files training model ``name`` starts from: its dependencies on the weights stage."""
    return [paths.weights_file(backbone) for backbone in model_imagenet_backbones(params, name)]


def single_task_models(params: Mapping) -> list[str]:
    """The models that predict one task (the ST-Nets, arch st), in params order: the paper's
    EfficientPS column in the report, each task from its own model."""
    return [name for name in models(params) if _single_task(params["models"][name])]


def _single_task(entry: Mapping) -> bool:
    return entry["arch"] == "st"


def model_tasks(params: Mapping, name: str) -> list[str]:
    entry = job_params(params, name)["models"][name]
    return [entry["task"]] if _single_task(entry) else list(TASKS)


# --- Studies: variants of the params as a dimension of the DAG ---------------------------------
#
# A study (params `studies`) runs its models under each variant (a params override). Each
# (variant, model) becomes a job only if no job before it computes the same thing: the same values
# of the train and evaluate params keys that job depends on (STAGE_PARAMS), with the weighting's
# keys left out for a single-task model (it weighs its one task 1 whatever the strategy:
# mbmt.training.weighting.weighting_name), and the same ST-Nets to start from. The main models
# (params `models`) come first, then the studies and their variants in params order, so an
# unchanged model of a variant is the main job itself (the weighting study's ST-Nets), and a new
# variant adds only the jobs it changes. A new job is named <model>-<study>-<variant> and runs
# as a model of its own params (job_params), so the stage commands and paths stay those of a model.

@dataclass(frozen=True)
class StudyJob:
    name: str  # the job's model name, <model>-<study>-<variant>: models/<name>/seed<S>/, metrics/<name>/
    study: str
    variant: str
    model: str  # the params model it trains under the variant

    @property
    def override_key(self) -> str:
        """The params key of the variant's override: with the model's own keys, what the job depends on."""
        return f"studies.{self.study}.variants.{self.variant}"


def studies(params: Mapping) -> dict:
    return dict(params.get("studies") or {})


def study_job_name(study: str, variant: str, model: str) -> str:
    return f"{model}-{study}-{variant}"


def _closure(params: Mapping, wanted: set[str]) -> list[str]:
    wanted = wanted | set(single_task_models(params))
    wanted |= {source for name in list(wanted) for source in init_from(params, name)}
    return [name for name in models(params) if name in wanted]


def _identity(params: Mapping, name: str, memo: dict[str, str]) -> str:
    """What a train and evaluate job of model ``name`` under ``params`` computes, as a hash."""
    if name not in memo:
        entry = dict(params["models"][name])
        if entry.get("init_from"):
            entry["init_from"] = [_identity(params, source, memo) for source in entry["init_from"]]
        skip = ({f"train.{key}" for key, spec in TRAIN_KEYS.items() if spec.recorded == WEIGHTING}
                if _single_task(entry) else set())
        values = {key: _lookup(params, key) for key in STAGE_PARAMS["train"] + STAGE_PARAMS["evaluate"]
                  if "{model}" not in key and key not in skip}
        memo[name] = fingerprint({**values, "model": entry})
    return memo[name]


def _lookup(params: Mapping, key: str):
    value = params
    for part in key.split("."):
        value = value[part]
    return value


@dataclass(frozen=True)
class _Resolution:
    jobs: dict[str, StudyJob]  # the study jobs, by name, in params order
    members: dict[tuple[str, str, str], str]  # (study, variant, model) -> the job (a model or study job name)


@functools.lru_cache(maxsize=8)
def _resolve_cached(text: str) -> _Resolution:
    params = json.loads(text)
    owners: dict[str, str] = {}
    memo: dict[str, str] = {}
    for name in models(params):
        owners.setdefault(_identity(params, name, memo), name)
    jobs, members = {}, {}
    for study, definition in studies(params).items():
        for variant in definition["variants"]:
            variant_values = variant_params(params, study, variant)
            memo = {}
            for name in _closure(variant_values, set(definition["models"])):
                identity = _identity(variant_values, name, memo)
                if identity not in owners:
                    job = StudyJob(study_job_name(study, variant, name), study, variant, name)
                    owners[identity], jobs[job.name] = job.name, job
                members[(study, variant, name)] = owners[identity]
    return _Resolution(jobs, members)


def _resolve(params: Mapping) -> _Resolution:
    return _resolve_cached(json.dumps(params))  # in params order: the order decides which job is shared


def study_jobs(params: Mapping) -> dict[str, StudyJob]:
    """The jobs the studies add beyond the main models (none without studies), by name."""
    return _resolve(params).jobs if studies(params) else {}


def study_members(params: Mapping, study: str) -> dict[str, dict[str, str]]:
    """{variant: {model: the job that runs it}} of ``study``: a main model's name, or a study job's."""
    table: dict[str, dict[str, str]] = {}
    for (name, variant, model), job in _resolve(params).members.items():
        if name == study:
            table.setdefault(variant, {})[model] = job
    return table


def job_params(params: Mapping, name: str) -> Mapping:
    """The params job ``name`` runs with: ``params`` for a main model; for a study job, its variant's
    params whose models are renamed to the jobs that run them in the variant (so its init_from
    names the ST-Nets' jobs, and its own entry is params `models.<name>`)."""
    if name in params["models"]:
        return params
    job = study_jobs(params).get(name)
    if job is None:
        from mbmt.errors import ParamsError

        raise ParamsError(f"unknown model {name!r}; models in params: {', '.join(params['models'])}"
                          + (f"; study jobs: {', '.join(study_jobs(params))}" if study_jobs(params) else ""))
    variant_values = variant_params(params, job.study, job.variant)
    members = study_members(params, job.study)[job.variant]
    renamed = {}
    for model, runner in members.items():
        entry = dict(variant_values["models"][model])
        if entry.get("init_from"):
            entry["init_from"] = [members[source] for source in entry["init_from"]]
        renamed[runner] = entry
    return {**variant_values, "models": {**variant_values["models"], **renamed}}


def job_params_keys(params: Mapping, stage: str, name: str) -> list[str]:
    """The params keys (of params.yaml) job ``name`` of ``stage`` (train or evaluate) depends on: the
    stage's keys for the model; for a study job those of the model it trains plus its variant's
    override, whose values make its effective params."""
    job = study_jobs(params).get(name)
    if job is None:
        return _params(stage, name)
    return _params(stage, job.model) + [job.override_key]


def report_params_keys(params: Mapping) -> list[str]:
    """The report's params keys: the studies too when there are some (their tables)."""
    return _params("report") + (["studies"] if studies(params) else [])


def params_keys(params: Mapping, stage: str, name: str | None = None) -> list[str]:
    """The params keys (of params.yaml) a job of ``stage`` depends on; ``name``: its model (or
    study job), for train and evaluate."""
    if stage in ("train", "evaluate"):
        return job_params_keys(params, stage, name)
    return report_params_keys(params) if stage == "report" else _params(stage)


def processed_files(params: Mapping) -> list[Path]:
    """preprocess's outputs: the splits, real.h5 when data.real_images is set, and the manifest."""
    splits = list(paths.SPLITS) + ([paths.REAL_SPLIT] if params["data"]["real_images"] else [])
    return [paths.split_file(split) for split in splits] + [paths.manifest_file()]


# Not the manifest: it records when and from where the data came, which must not retrain.
TRAINING_DATA = [paths.split_file("train"), paths.split_file("test")]


def train_outputs(name: str, seed) -> list[Path]:
    """What training ``name`` with ``seed`` publishes (``seed`` may be a template, e.g. "{seed}")."""
    return [paths.model_file(name, seed), paths.live_dir(name, seed)]


def evaluate_outputs(name: str, seed) -> list[Path]:
    """What evaluating ``name``'s ``seed`` writes (``seed`` may be a template, e.g. "{seed}"): the
    split's metrics and the per-image rows the report's paired intervals resample."""
    return [paths.metrics_file(name, seed), paths.per_image_file(name, seed)]


def runs(params: Mapping) -> list[tuple[str, int]]:
    """Every (model, seed) pair of params `models`, model by model."""
    return [(name, seed) for name in models(params) for seed in seeds(params)]


def job_runs(params: Mapping) -> list[tuple[str, int]]:
    """Every (job, seed) pair: the models', then the studies' jobs (job_names)."""
    return [(name, seed) for name in job_names(params) for seed in seeds(params)]


def report_inputs(params: Mapping) -> list[Path]:
    pairs = job_runs(params)
    return ([p for name, seed in pairs for p in evaluate_outputs(name, seed)]
            + [p for name, seed in pairs for p in train_outputs(name, seed)]
            + [paths.split_file("test"), paths.manifest_file()]
            + ([paths.split_file(paths.REAL_SPLIT)] if params["data"]["real_images"] else []))


REPORT_OUTPUTS = [paths.REPORT_INDEX, paths.REPORT_TABLES_DIR, paths.REPORT_FIGURES_DIR, paths.REPORT_PROVENANCE]


def outputs(params: Mapping) -> list[Path]:
    """Every output of the DAG (without the runs/ state, which neither front end versions)."""
    pairs = job_runs(params)
    return ([paths.RAW_DIR, *processed_files(params)]
            + [p for backbone in imagenet_backbones(params) for p in weights_outputs(backbone)]
            + [p for name, seed in pairs for p in train_outputs(name, seed)]
            + [p for name, seed in pairs for p in evaluate_outputs(name, seed)] + REPORT_OUTPUTS)


# --- dvc.yaml ------------------------------------------------------------------------------------

DVC_YAML = Path("dvc.yaml")
GENERATE_COMMAND = "mbmt dag"
# Each task's headline validation curve (mbmt.tasks.HEADLINE_METRICS; DVCLive's file under
# live/plots/metrics): its chart title, file and column.
CURVES = {task: (f"Validation {TASK_TITLES[task]} {headline.axis}", f"{headline.curve}.tsv", headline.key)
          for task, headline in HEADLINE_METRICS.items()}
# What DVC substitutes for the model and the seed of a matrix or foreach group's job.
MODEL, SEED = "${item.model}", "${item.seed}"


def _scalar(value: str) -> str:
    return value if re.fullmatch(r"[\w./${}@%() -]+", value) and value[0] not in " -" else json.dumps(value)


def _list(key: str, items, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{key}:"] + [f"{pad}  - {_scalar(str(item))}" for item in items]


def _code(stage: str) -> list[str]:
    return [f"src/mbmt/{entry}" for entry in STAGE_CODE[stage]]


def _params(stage: str, model: str = "") -> list[str]:
    return [key.format(model=model) for key in STAGE_PARAMS[stage]]


def environment_key(stage: str) -> str:
    """The key of ``stage``'s result-affecting locked packages in requirements/stages.yaml (its
    params in dvc.yaml, the same values in the Snakefile's; mbmt.environment)."""
    return f"{environment.STAGES_KEY}.{stage}"


def environment_params(stage: str, lock: str | Path = environment.BASE_LOCK) -> dict:
    """{environment_key(stage): the stage's result-affecting locked versions}: what the Snakefile
    tracks as a params value, and dvc.yaml reads from requirements/stages.yaml."""
    return {environment_key(stage): environment.stage_packages(stage, lock)}


def _stage(cmd: str, deps, params, indent: int, outs=(), metrics=(), stage: str = "") -> list[str]:
    pad = " " * indent
    lines = [f"{pad}cmd: {_scalar(cmd)}", *_list("deps", deps, indent), *_list("params", params, indent)]
    if stage:  # the lock's versions of the packages that can change what the stage computes
        lines += [f"{pad}  - {environment.STAGES_FILE.as_posix()}:", f"{pad}      - {environment_key(stage)}"]
    if outs:
        lines += _list("outs", outs, indent)
    if metrics:
        lines += _list("metrics", metrics, indent)
    return lines


def _inline(mapping: Mapping) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in mapping.items()) + "}"


def render_dvc_yaml(params: Mapping) -> str:
    """dvc.yaml for ``params``: Snakemake's jobs as DVC stages, per-backbone, per-model and per-seed
    stages as matrix and foreach groups (stage names weights@efficientnet_b2, train@st_ss-0, as job_name)."""
    names, from_st, from_data = job_names(params), trained_from_st(params), trained_from_data(params)
    # With studies, a job's params are its model's keys and its variant's override (job_params_keys):
    # each item names both, a main model's item one of its own keys twice (a repeated params key is
    # harmless).
    with_studies = bool(study_jobs(params))

    def params_items(name: str, stage: str) -> dict[str, str]:
        if not with_studies:
            return {}
        job = study_jobs(params).get(name)
        return ({"base": job.model, "override": job.override_key} if job
                else {"base": name, "override": _params(stage, name)[-1]})

    def job_keys(stage: str) -> list[str]:
        if not with_studies:
            return _params(stage, MODEL)
        return _params(stage, "${item.base}") + ["${item.override}"]

    seed_list = f"[{', '.join(map(str, seeds(params)))}]"
    lines = [
        f"# Generated by `{GENERATE_COMMAND}` from params.yaml and src/mbmt/dag.py; do not edit. Run",
        f"# `{GENERATE_COMMAND}` after changing `models`, an init_from, `seeds` or `studies` in params.yaml",
        f"# (`{GENERATE_COMMAND} --check` fails while this file is out of date). The Snakefile builds its",
        "# jobs from the same definitions: the same commands, dependencies (data and the code each stage",
        "# runs), params keys and outputs; tests/test_dag.py compares the two as each tool loads them.",
        "# `dvc repro` re-runs what a change in params.yaml, the code or the data touches. Each model trains",
        "# and is evaluated once per seed (params seeds), the seed on the command line. Each stage also depends",
        "# on the locked versions of the packages that can change what it computes (requirements/stages.yaml,",
        "# which `mbmt dag` writes from requirements/base.txt). See docs/workflow.md and docs/environment.md.",
        "stages:",
        "  fetch:",
        *_stage("mbmt fetch", _code("fetch"), _params("fetch"), 4, outs=[paths.RAW_DIR], stage="fetch"),
        "",
        "  preprocess:",
        *_stage("mbmt preprocess", _code("preprocess") + [str(paths.RAW_DIR)]
                + ([params["data"]["real_images"]] if params["data"]["real_images"] else []),
                _params("preprocess"), 4, outs=processed_files(params), stage="preprocess"),
    ]
    if imagenet_backbones(params):
        lines += ["", "  # The ImageNet weights of each backbone that a model with pretrained: true starts from.",
                  "  weights:", f"    foreach: [{', '.join(imagenet_backbones(params))}]", "    do:",
                  *_stage("mbmt weights ${item}", _code("weights"), _params("weights"), 6,
                          outs=weights_outputs("${item}"), stage="weights")]
    train_deps = _code("train") + TRAINING_DATA
    train_cmd = f"mbmt train {MODEL} --seed {SEED}"
    # DVC cannot splice a list into deps, so each job names its ST-Nets (init_from) and ImageNet
    # weight files one per key: st1.., w1..; a shorter list repeats its last entry, and a model
    # without weight files names the training data in their place (a repeated dependency is harmless).
    weight_slots = [f"w{i + 1}" for i in range(max([len(model_weights(params, n)) for n in names] + [0]))]

    def weight_items(name: str) -> dict[str, str]:
        files = [str(f) for f in model_weights(params, name)] or [str(TRAINING_DATA[0])]
        return dict(zip(weight_slots, files + files[-1:] * (len(weight_slots) - len(files))))

    weight_deps = [f"${{item.{slot}}}" for slot in weight_slots]
    if from_data:
        lines += ["", "  # Models trained straight from the data (and their ImageNet weights), once per seed.",
                  "  train:", "    foreach:"]
        for name in from_data:
            for seed in seeds(params):
                item = {"model": name, "seed": seed, **params_items(name, "train"), **weight_items(name)}
                lines.append(f"      {job_key(name, seed)}: {_inline(item)}")
        lines += ["    do:",
                  *_stage(train_cmd, train_deps + weight_deps, job_keys("train"), 6,
                          outs=train_outputs(MODEL, SEED), stage="train")]
    if from_st:
        width = max(len(init_from(params, name)) for name in from_st)
        slots = [f"st{i + 1}" for i in range(width)]
        lines += ["", "  # Models whose encoders start from trained ST-Nets (params init_from), after the same",
                  "  # seed's ST-Nets.", "  train_from_st:", "    foreach:"]
        for name in from_st:
            sources = init_from(params, name)
            sources += sources[-1:] * (width - len(sources))
            for seed in seeds(params):
                item = {"model": name, "seed": seed, **params_items(name, "train"), **dict(zip(slots, sources)),
                        **weight_items(name)}
                lines.append(f"      {job_key(name, seed)}: {_inline(item)}")
        lines += ["    do:",
                  *_stage(train_cmd,
                          train_deps + [paths.model_file(f"${{item.{slot}}}", SEED) for slot in slots] + weight_deps,
                          job_keys("train"), 6, outs=train_outputs(MODEL, SEED), stage="train")]
    metrics = paths.metrics_file(MODEL, SEED)
    indent = 6 if with_studies else 4
    evaluate = _stage(f"mbmt evaluate {MODEL} --seed {SEED}",
                      _code("evaluate") + [paths.model_file(MODEL, SEED), paths.split_file(params["evaluate"]["split"])],
                      job_keys("evaluate"), indent,
                      outs=[p for p in evaluate_outputs(MODEL, SEED) if p != metrics], metrics=[metrics],
                      stage="evaluate")
    if with_studies:  # a foreach, as the trainings, for the items' params keys (same stage names)
        lines += ["", "  evaluate:", "    foreach:"]
        items = {job_key(name, seed): {"model": name, "seed": seed, **params_items(name, "evaluate")}
                 for name, seed in job_runs(params)}
        lines += [f"      {key}: {_inline(item)}" for key, item in items.items()]
        lines += ["    do:", *evaluate]
    else:
        lines += ["", "  evaluate:", "    matrix:", f"      model: [{', '.join(names)}]", f"      seed: {seed_list}",
                  *evaluate]
    lines += ["", "  report:",
              *_stage("mbmt report", _code("report") + report_inputs(params), report_params_keys(params), 4,
                      outs=REPORT_OUTPUTS, stage="report"),
              "",
              "# Training curves: DVCLive's logs inside the train stages' `live` outputs. Plots of files inside",
              "# an output are declared here, at the top level (a stage's `plots:` would be a second owner of",
              "# those paths). `dvc plots show` renders them; `dvc plots diff` compares revisions.",
              "plots:"]
    for name, seed in runs(params):
        lines += [f"  - {paths.live_dir(name, seed)}/plots/metrics:", "      x: step"]
    lines.append("  # Each task's headline validation metric, every model (and seed) that predicts the task on one chart.")
    for task, (title, curve, column) in CURVES.items():
        lines += [f"  - {title}:", "      x: step", "      y:"]
        lines += [f"        {paths.live_dir(name, seed)}/plots/metrics/{curve}: {column}"
                  for name, seed in runs(params) if task in model_tasks(params, name)]
    lines += ["",
              "# DVCLive's summary of each training (the last epoch's losses, weights and validation metrics),",
              "# shown by `dvc metrics show` and `dvc exp show` beside the evaluate stages' metrics/ files.",
              "metrics:"]
    lines += [f"  - {paths.live_dir(name, seed)}/metrics.json" for name, seed in runs(params)]
    return "\n".join(lines) + "\n"

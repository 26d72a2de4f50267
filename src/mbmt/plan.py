"""The plan of a params mapping, built once: its jobs (models × seeds × study variants), each job's
params and identity, the params keys it depends on, its inputs and outputs.

``Plan(params)`` takes validated params (mbmt.config.load_params) and resolves the studies once;
both front ends ask it: ``workflow/rules/common.smk`` builds it once (``PLAN``) for the rules, and
``mbmt dag`` writes ``dvc.yaml`` from it (mbmt.dvc_yaml; tests/test_dag.py compares the two as each
tool loads them). What each stage is, whatever the params (its params keys, its code), is in
mbmt.stage_specs.

Studies (params `studies`) run their models under each variant (a params override). Each
(variant, model) is compared by two identities: its *training* identity (the values of the train
stage's params keys, with the weighting's keys left out for a single-task model, which weighs its
one task 1 whatever the strategy: mbmt.training.weighting.weighting_name; its model entry; its
ST-Nets' training identities) and its *evaluation* identity (its training identity and the values
of the evaluate stage's keys). The main models (params `models`) come first, then the studies and
their variants in params order. A (variant, model) whose evaluation identity an earlier job has is
that job; otherwise it is a new job named <model>-<study>-<variant>, which trains only if no
earlier job has its training identity, and else evaluates the earlier job's model file: a variant
that overrides only `evaluate` adds evaluate jobs and no training. A study job runs as a model of
its own params (``job_params``), so the stage commands and paths stay those of a model.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mbmt import paths
from mbmt.config import TRAIN_KEYS, WEIGHTING, fingerprint, variant_params
from mbmt.config import imagenet_backbones as entry_imagenet_backbones
from mbmt.errors import ParamsError
from mbmt.stage_specs import STAGE_PARAMS, stage_params
from mbmt.tasks import TASKS

# Not the manifest: it records when and from where the data came, which must not retrain.
TRAINING_DATA = [paths.split_file("train"), paths.split_file("test")]
REPORT_OUTPUTS = [paths.REPORT_INDEX, paths.REPORT_TABLES_DIR, paths.REPORT_FIGURES_DIR, paths.REPORT_PROVENANCE]


def job_key(model: str, seed) -> str:
    """What names a per-model, per-seed job within its stage, as DVC names a matrix's stages."""
    return f"{model}-{seed}"


def job_name(stage: str, model: str, seed) -> str:
    """A per-model, per-seed job's name, as DVC names its stage (train@st_ss-0)."""
    return f"{stage}@{job_key(model, seed)}"


def study_job_name(study: str, variant: str, model: str) -> str:
    return f"{model}-{study}-{variant}"


def weights_outputs(backbone: str) -> list[Path]:
    """What the weights job of ``backbone`` writes (``backbone`` may be a template): the file and its record."""
    return [paths.weights_file(backbone), paths.weights_record(backbone)]


def train_outputs(name: str, seed) -> list[Path]:
    """What training ``name`` with ``seed`` publishes (``seed`` may be a template, e.g. "{seed}")."""
    return [paths.model_file(name, seed), paths.live_dir(name, seed)]


def evaluate_outputs(name: str, seed) -> list[Path]:
    """What evaluating ``name``'s ``seed`` writes (``seed`` may be a template, e.g. "{seed}"): the
    split's metrics and the per-image rows the report's paired intervals resample."""
    return [paths.metrics_file(name, seed), paths.per_image_file(name, seed)]


def is_single_task(entry: Mapping) -> bool:
    """Whether params model entry ``entry`` predicts one task (an ST-Net, arch st)."""
    return entry["arch"] == "st"


@dataclass(frozen=True)
class StudyJob:
    name: str  # the job's model name, <model>-<study>-<variant>: metrics/<name>/ (and models/<name>/ if it trains)
    study: str
    variant: str
    model: str  # the params model it runs under the variant
    training: str  # the job whose training it evaluates: itself, or an earlier job of the same training identity

    @property
    def override_key(self) -> str:
        """The params key of the variant's override: with the model's own keys, what the job depends on."""
        return f"studies.{self.study}.variants.{self.variant}"

    @property
    def trains(self) -> bool:
        return self.training == self.name


def _lookup(params: Mapping, key: str):
    value = params
    for part in key.split("."):
        value = value[part]
    return value


class _Identities:
    """The training and evaluation identities of the models of one params mapping (a variant's)."""

    def __init__(self, params: Mapping):
        self.params = params
        self.evaluate = {key: _lookup(params, key) for key in STAGE_PARAMS["evaluate"] if "{model}" not in key}
        self._train: dict[str, str] = {}

    def train(self, name: str) -> str:
        if name not in self._train:
            params = self.params
            entry = dict(params["models"][name])
            if entry.get("init_from"):
                entry["init_from"] = [self.train(source) for source in entry["init_from"]]
            skip = ({f"train.{key}" for key, spec in TRAIN_KEYS.items() if spec.recorded == WEIGHTING}
                    if is_single_task(entry) else set())
            values = {key: _lookup(params, key) for key in STAGE_PARAMS["train"]
                      if "{model}" not in key and key not in skip}
            self._train[name] = fingerprint({**values, "model": entry})
        return self._train[name]

    def evaluation(self, name: str) -> str:
        return fingerprint({"train": self.train(name), **self.evaluate})


class Plan:
    """The jobs of validated ``params`` and everything each front end declares of them."""

    def __init__(self, params: Mapping):
        self.params = params
        self.models: list[str] = list(params["models"])
        self.seeds: list[int] = list(params["seeds"])  # every model trains and is evaluated once per seed
        self.studies: dict = dict(params.get("studies") or {})
        self.study_jobs: dict[str, StudyJob] = {}  # the jobs the studies add beyond the main models, by name
        # (study, variant, model) -> the job that evaluates it: a main model's name, or a study job's
        self._members: dict[tuple[str, str, str], str] = {}
        self._variants: dict[tuple[str, str], dict] = {}
        self._job_params: dict[str, Mapping] = {}
        self._resolve()
        # Every job, evaluated per seed: params `models`, then the studies' jobs, in params order.
        self.job_names: list[str] = self.models + list(self.study_jobs)
        # The jobs that train (the others evaluate an earlier job's training).
        self.trained_jobs: list[str] = [name for name in self.job_names if self.training(name) == name]
        self.trained_from_st: list[str] = [name for name in self.trained_jobs if self.init_from(name)]
        self.trained_from_data: list[str] = [name for name in self.trained_jobs if not self.init_from(name)]

    # --- Studies -------------------------------------------------------------------------------

    def _resolve(self) -> None:
        main = _Identities(self.params)
        trainings = {main.train(name): name for name in self.models}
        evaluations = {main.evaluation(name): name for name in self.models}
        for study, definition in self.studies.items():
            for variant in definition["variants"]:
                values = self.variant_params(study, variant)
                identities = _Identities(values)
                for name in self._closure(values, set(definition["models"])):
                    evaluation = identities.evaluation(name)
                    if evaluation not in evaluations:
                        job_name_ = study_job_name(study, variant, name)
                        training = trainings.setdefault(identities.train(name), job_name_)
                        self.study_jobs[job_name_] = StudyJob(job_name_, study, variant, name, training)
                        evaluations[evaluation] = job_name_
                    self._members[(study, variant, name)] = evaluations[evaluation]

    def variant_params(self, study: str, variant: str) -> dict:
        if (study, variant) not in self._variants:
            self._variants[(study, variant)] = variant_params(self.params, study, variant)
        return self._variants[(study, variant)]

    def _closure(self, params: Mapping, wanted: set[str]) -> list[str]:
        """``wanted`` and the single-task models (every study table compares with them) and the
        ST-Nets they start from, in params order."""
        models = params["models"]
        wanted = wanted | {name for name in models if is_single_task(models[name])}
        wanted |= {source for name in list(wanted) for source in models[name].get("init_from") or []}
        return [name for name in models if name in wanted]

    def study_members(self, study: str) -> dict[str, dict[str, str]]:
        """{variant: {model: the job that evaluates it}} of ``study``: a main model's name, or a
        study job's (its metrics: metrics/<job>/)."""
        table: dict[str, dict[str, str]] = {}
        for (name, variant, model), job in self._members.items():
            if name == study:
                table.setdefault(variant, {})[model] = job
        return table

    def training(self, name: str) -> str:
        """The job whose model file job ``name`` evaluates: ``name`` itself, unless it is a study
        job whose training an earlier job already runs (a variant that changes only `evaluate`)."""
        job = self.study_jobs.get(name)
        return job.training if job else name

    # --- Each job's params ----------------------------------------------------------------------

    def _unknown(self, name: str) -> ParamsError:
        return ParamsError(f"unknown model {name!r}; models in params: {', '.join(self.models)}"
                           + (f"; study jobs: {', '.join(self.study_jobs)}" if self.study_jobs else ""))

    def job_params(self, name: str) -> Mapping:
        """The params job ``name`` runs with: ``params`` for a main model; for a study job, its
        variant's params whose models are renamed to the jobs that run them in the variant (so its
        init_from names the trainings of its ST-Nets, and its own entry is params `models.<name>`)."""
        if name in self.params["models"]:
            return self.params
        if name in self._job_params:
            return self._job_params[name]
        job = self.study_jobs.get(name)
        if job is None:
            raise self._unknown(name)
        values = self.variant_params(job.study, job.variant)
        members = self.study_members(job.study)[job.variant]
        renamed = {}
        for model, runner in members.items():
            entry = dict(values["models"][model])
            if entry.get("init_from"):
                entry["init_from"] = [self.training(members[source]) for source in entry["init_from"]]
            renamed[runner] = entry
        self._job_params[name] = {**values, "models": {**values["models"], **renamed}}
        return self._job_params[name]

    def entry(self, name: str) -> Mapping:
        """Job ``name``'s model entry (params `models.<name>` of its job_params)."""
        return self.job_params(name)["models"][name]

    def init_from(self, name: str) -> list[str]:
        """The ST-Nets (their trainings, for a study job) whose trained encoders start job ``name``
        (params init_from; [] if none). Each seed's training starts from the same seed's ST-Nets."""
        return list(self.entry(name).get("init_from") or [])

    def model_tasks(self, name: str) -> list[str]:
        entry = self.entry(name)
        return [entry["task"]] if is_single_task(entry) else list(TASKS)

    @functools.cached_property
    def single_task_models(self) -> list[str]:
        """The models that predict one task (the ST-Nets, arch st), in params order: the paper's
        EfficientPS column in the report, each task from its own model."""
        return [name for name in self.models if is_single_task(self.params["models"][name])]

    def model_imagenet_backbones(self, name: str) -> list[str]:
        """The backbones job ``name`` starts from ImageNet weights (mbmt.config.imagenet_backbones)."""
        return entry_imagenet_backbones(self.entry(name))

    @functools.cached_property
    def imagenet_backbones(self) -> list[str]:
        """Every backbone some training starts from ImageNet weights: one weights job each."""
        return sorted({backbone for name in self.trained_jobs for backbone in self.model_imagenet_backbones(name)})

    def model_weights(self, name: str) -> list[Path]:
        """The ImageNet weight files training ``name`` starts from: its dependencies on the weights stage."""
        return [paths.weights_file(backbone) for backbone in self.model_imagenet_backbones(name)]

    # --- Params keys ----------------------------------------------------------------------------

    def job_params_keys(self, stage: str, name: str) -> list[str]:
        """The params keys (of params.yaml) job ``name`` of ``stage`` (train or evaluate) depends on:
        the stage's keys for the model; for a study job those of the model it runs plus its
        variant's override, whose values make its effective params."""
        job = self.study_jobs.get(name)
        if job is None:
            return stage_params(stage, name)
        return stage_params(stage, job.model) + [job.override_key]

    @functools.cached_property
    def report_params_keys(self) -> list[str]:
        """The report's params keys: the studies too when there are some (their tables)."""
        return stage_params("report") + (["studies"] if self.studies else [])

    def params_keys(self, stage: str, name: str | None = None) -> list[str]:
        """The params keys (of params.yaml) a job of ``stage`` depends on; ``name``: its model (or
        study job), for train and evaluate."""
        if stage in ("train", "evaluate"):
            return self.job_params_keys(stage, name)
        return self.report_params_keys if stage == "report" else stage_params(stage)

    # --- Inputs and outputs ---------------------------------------------------------------------

    @functools.cached_property
    def processed_files(self) -> list[Path]:
        """preprocess's outputs: the splits, real.h5 when data.real_images is set, and the manifest."""
        splits = list(paths.SPLITS) + ([paths.REAL_SPLIT] if self.params["data"]["real_images"] else [])
        return [paths.split_file(split) for split in splits] + [paths.manifest_file()]

    @functools.cached_property
    def runs(self) -> list[tuple[str, int]]:
        """Every (model, seed) pair of params `models`, model by model."""
        return [(name, seed) for name in self.models for seed in self.seeds]

    @functools.cached_property
    def job_runs(self) -> list[tuple[str, int]]:
        """Every (job, seed) pair evaluated: the models', then the studies' jobs (job_names)."""
        return [(name, seed) for name in self.job_names for seed in self.seeds]

    @functools.cached_property
    def training_runs(self) -> list[tuple[str, int]]:
        """Every (job, seed) pair trained (trained_jobs)."""
        return [(name, seed) for name in self.trained_jobs for seed in self.seeds]

    @functools.cached_property
    def report_inputs(self) -> list[Path]:
        return ([p for name, seed in self.job_runs for p in evaluate_outputs(name, seed)]
                + [p for name, seed in self.training_runs for p in train_outputs(name, seed)]
                + [paths.split_file("test"), paths.manifest_file()]
                + ([paths.split_file(paths.REAL_SPLIT)] if self.params["data"]["real_images"] else []))

    @functools.cached_property
    def outputs(self) -> list[Path]:
        """Every output of the DAG (without the runs/ state, which neither front end versions)."""
        return ([paths.RAW_DIR, *self.processed_files]
                + [p for backbone in self.imagenet_backbones for p in weights_outputs(backbone)]
                + [p for name, seed in self.training_runs for p in train_outputs(name, seed)]
                + [p for name, seed in self.job_runs for p in evaluate_outputs(name, seed)] + REPORT_OUTPUTS)

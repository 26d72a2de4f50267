"""`mbmt train`: every model trains, run directories, republishing, determinism, divergence."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mbmt import cli, stage_specs
from mbmt.config import load_params, model_settings
from mbmt.stages.train import unpack as train_job
from mbmt.models import create_model
from mbmt.paths import live_dir, metrics_file, model_file
from mbmt.io import sha256_file
from mbmt.training import checkpoint
from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

# Dependency order: the MBMT-Nets with init_from start from the trained ST-Nets.
MODELS = ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial", "mbmt_full_pretrained", "mbmt_full_scratch", "mtan")
TASK_METRICS = {
    "semantic": ("loss", "miou", "pix_acc"),
    "depth": ("loss", "abs_err", "rel_err"),
    "normal": ("loss", "mean", "median", "within_11_25", "within_22_5", "within_30"),
}


def train(*args: str) -> int:
    return cli.main(["train", *args, "--no-progress"])


def live_column(name: str, metric: str) -> list[float]:
    """One metric's per-epoch values from the published DVCLive log."""
    with open(live_dir(name, 0) / "plots" / "metrics" / f"{metric}.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [int(r["step"]) for r in rows] == list(range(len(rows)))
    return [float(r[metric.rsplit("/", 1)[1]]) for r in rows]


def run_dirs(name: str) -> list[Path]:
    return sorted(p for p in (Path("runs") / name).iterdir() if p.is_dir())


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def set_train(**settings) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"].update(settings)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def check_metrics(name: str, tasks: tuple[str, ...]) -> None:
    """metrics/<name>.json: the model's task blocks (pixel averaging), the batch-averaged ones, the context."""
    metrics = json.loads(metrics_file(name, 0).read_text())
    assert set(metrics) == {*tasks, "batch_averaged", "context"}, name
    for block in (metrics, metrics["batch_averaged"]):
        assert set(block) >= set(tasks)
        for task in tasks:
            values = block[task]
            assert tuple(values) == TASK_METRICS[task], (name, task)
            assert all(math.isfinite(v) and v >= 0 for v in values.values()), (name, task, values)
        if "semantic" in tasks:
            assert block["semantic"]["miou"] <= 100 and block["semantic"]["pix_acc"] <= 100
        if "normal" in tasks:
            n = block["normal"]
            assert n["mean"] <= 180 and n["median"] <= 180
            assert n["within_11_25"] <= n["within_22_5"] <= n["within_30"] <= 100
    context = metrics["context"]
    assert context["images"] == 4 and context["split"] == "test" and context["averaging"] == "pixel"
    assert context["checkpoint_sha256"] == sha256_file(model_file(name, 0))
    assert context["tasks"] == list(tasks)


def test_every_model_trains_and_evaluates(project, processed_data):
    processed_data()
    for name in MODELS:
        assert train(name) == 0, name
        record = torch.load(model_file(name, 0), weights_only=True)
        tasks = tuple(record["tasks"])
        assert record["extra"]["input_size"] == [64, 64] and record["extra"]["epochs"] == 2
        total = live_column(name, "train/loss/total")
        assert len(total) == 2 and total[1] < total[0], f"{name}: training loss did not fall: {total}"
        assert live_column(name, f"train/weight/{tasks[0]}") == [1.0, 1.0]  # DWA: 1 in epochs 0 and 1
        assert live_column(name, "train/lr") == [1.0e-3, 0.5e-3]  # StepLR(lr_step=1, gamma=0.5)
        assert len(live_column(name, f"val/{tasks[0]}/loss")) == 2
        assert json.loads((live_dir(name, 0) / "metrics.json").read_text())["step"] == 1  # `dvc metrics` summary
        assert cli.main(["evaluate", name]) == 0, name
        check_metrics(name, tasks)

    # mbmt_partial trained its fusion and decoder only: its encoders are still the ST-Nets'
    # (BatchNorm statistics included), and they hold nothing an optimiser touched.
    partial = weights(model_file("mbmt_partial", 0))
    for i, source in enumerate(("st_ss", "st_de", "st_snp")):
        encoder = {k.removeprefix("encoder."): v for k, v in weights(model_file(source, 0)).items() if k.startswith("encoder.")}
        frozen = {k.removeprefix(f"encoder.backbones.{i}."): v for k, v in partial.items()
                  if k.startswith(f"encoder.backbones.{i}.")}
        assert_same_weights(frozen, encoder)


def test_finished_run_is_republished_identical_rerun_and_params_change(project, processed_data, monkeypatch):
    from mbmt.training.trainer import Trainer

    processed_data()
    assert train("st_de") == 0
    first = weights(model_file("st_de", 0))
    first_val = live_column("st_de", "val/depth/abs_err")
    [run] = run_dirs("st_de")

    # DVC and Snakemake delete a stage's outputs before re-running it: a finished run republishes
    # them from its final checkpoint without training.
    shutil.rmtree("models")
    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_epoch", lambda *a: pytest.fail("a finished run was trained again"))
        assert train("st_de") == 0
    assert_same_weights(weights(model_file("st_de", 0)), first)
    assert live_column("st_de", "val/depth/abs_err") == first_val

    # Determinism: training again from scratch with the same seed gives the same weights and metrics,
    # also with DataLoader workers (augmentation depends on seed, epoch and index only), which is
    # why num_workers does not enter the run's fingerprint.
    set_train(num_workers=2)
    assert train("st_de", "--restart") == 0
    assert run_dirs("st_de") == [run]
    assert_same_weights(weights(model_file("st_de", 0)), first)
    assert live_column("st_de", "val/depth/abs_err") == first_val

    # A setting that changes the result gets a run directory of its own; the first one is kept.
    set_train(lr=2.0e-3)
    assert train("st_de") == 0
    assert len(run_dirs("st_de")) == 2 and run in run_dirs("st_de")
    assert load_checkpoint(run / CHECKPOINT_FILE)["epoch"] == 2
    assert not torch.equal(weights(model_file("st_de", 0))["encoder.body.conv_stem.weight"],
                           first["encoder.body.conv_stem.weight"])


def test_code_edit_starts_a_fresh_run_and_other_edits_do_not(project, processed_data, tmp_path_factory, monkeypatch):
    """The run's identity holds the digest of the train stage's code (mbmt.stage_specs), here of a copy of
    the package that the test edits: an edit of a file the stage declares trains a new run, an edit
    of one it does not (the CLI) republishes the finished run."""
    from mbmt.training.trainer import Trainer

    processed_data()
    package = tmp_path_factory.mktemp("package") / "mbmt"
    shutil.copytree(stage_specs.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(checkpoint, "code_digest", lambda stage: stage_specs.code_digest(stage, package))
    assert train("st_de") == 0
    [run] = run_dirs("st_de")

    with (package / "cli.py").open("a") as f:
        f.write("# a comment\n")
    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_epoch", lambda *a: pytest.fail("a finished run was trained again"))
        assert train("st_de") == 0
    assert run_dirs("st_de") == [run]

    with (package / "losses.py").open("a") as f:
        f.write("# a comment\n")
    assert train("st_de") == 0
    assert len(run_dirs("st_de")) == 2 and run in run_dirs("st_de")
    [fresh] = [r for r in run_dirs("st_de") if r != run]
    assert load_checkpoint(fresh / CHECKPOINT_FILE)["epoch"] == 2
    assert json.loads((fresh / "settings.json").read_text())["code"] == stage_specs.code_digest("train", package)


def hook_trainer_model(monkeypatch, hook, *, before: bool) -> None:
    """The trainer's model gets forward hook ``hook``, run before or after each forward pass."""
    import mbmt.training.trainer as trainer_module

    def create_with_hook(*args, **kwargs):
        model = create_model(*args, **kwargs)
        if before:
            model.register_forward_pre_hook(lambda module, inputs: hook(module, inputs, None))
        else:
            model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(trainer_module, "create_model", create_with_hook)


def first_batchnorm(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    return next((name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))


# The faults, each injected once at epoch 2 of 2 (4 training steps and 2 validation batches per
# epoch), and the error each must give. A BatchNorm buffer that overflows leaves the training loss
# finite (training mode normalises with batch statistics): only the check of the weights and
# buffers after the epoch sees it.
FAULTS = {
    "loss": ("train", 6, "the depth loss is nan at epoch 2 of 2, step 2 of 4; training stopped before that update"),
    "buffer": ("train", 6, "after epoch 2 of 2 weights or buffers are not finite (1 tensors, e.g. {batchnorm}.running_var)"),
    "validation": ("eval", 3, "the validation metrics after epoch 2 of 2 are not finite (depth/loss=nan"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_divergence_stops_with_one_error_and_keeps_the_checkpoint(fault, project, processed_data, monkeypatch, capsys):
    """A NaN loss, an infinite BatchNorm statistic or NaN validation metrics in epoch 2: one error
    saying what and where; epoch 1's checkpoint stays, nothing is published, and the run resumes."""
    processed_data()
    mode, call, message = FAULTS[fault]
    calls = {"train": 0, "eval": 0}

    def inject(module, inputs, outputs):
        calls["train" if module.training else "eval"] += 1
        if calls[mode] == call and module.training == (mode == "train"):
            if fault == "buffer":  # before the forward pass: autograd keeps the buffer for the backward
                first_batchnorm(module)[1].running_var.fill_(float("inf"))
            else:
                outputs["depth"] = torch.full_like(outputs["depth"], float("nan"))
        return outputs

    with monkeypatch.context() as m:
        hook_trainer_model(m, inject, before=fault == "buffer")
        assert train("mtnet") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    [run] = run_dirs("mtnet")
    batchnorm = first_batchnorm(create_model(model_settings(load_params(), "mtnet"), load_init=False))[0]
    assert message.format(batchnorm=batchnorm) in error[0]
    assert f"the last good checkpoint {run / CHECKPOINT_FILE} (after epoch 1) is kept; nothing was published" in error[0]
    assert not model_file("mtnet", 0).exists()
    kept = load_checkpoint(run / CHECKPOINT_FILE)
    assert kept["epoch"] == 1 and len(kept["history"]) == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())

    # The kept checkpoint resumes: without the fault the run trains epoch 2 alone (a restart from
    # scratch would train epoch 1 again and print it) and finishes.
    assert train("mtnet") == 0
    assert re.findall(r"\bmtnet epoch (\d)/2: loss ", capsys.readouterr().out) == ["2"]
    assert load_checkpoint(run / CHECKPOINT_FILE)["epoch"] == 2
    assert len(live_column("mtnet", "train/loss/depth")) == 2


def test_diverging_learning_rate_stops_before_publishing(project, processed_data):
    """lr 1e8 (which the schema now refuses, so the params are passed unvalidated): the training
    loss stays finite but BatchNorm's running variances overflow in epoch 1; nothing is written."""
    from mbmt.training.guard import DivergedError
    from mbmt.training.trainer import train as train_model

    processed_data()
    params = load_params()
    params["train"]["lr"] = 1.0e8
    with pytest.raises(DivergedError, match=r"after epoch 1 of 2 weights or buffers are not finite \(\d+ tensors, "
                                            r"e\.g\. [\w.]+\.running_var.* no checkpoint had been written yet"):
        train_model(train_job(params, "st_de"), seed=0, progress=False)
    assert not model_file("st_de", 0).exists()
    assert not list(Path("runs").rglob(CHECKPOINT_FILE))


def test_unknown_model_is_one_clear_error(project, capsys):
    assert train("st_xx") == 2
    assert "unknown model 'st_xx'" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_a_seed_outside_params_seeds_is_one_clear_error(project, capsys, stage):
    """A job's seed is one of params seeds; without --seed, the only one (none to pick among several)."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    assert cli.main([stage, "st_de", "--seed", "3"]) == 2
    assert capsys.readouterr().err.strip() == (f"mbmt {stage}: error: --seed 3 is not in params seeds [0]; add it "
                                               "there (and run `mbmt dag`) or pick one of them")
    Path("params.yaml").write_text(yaml.safe_dump({**params, "seeds": [0, 1]}))
    assert cli.main([stage, "st_de"]) == 2
    assert capsys.readouterr().err.strip() == (f"mbmt {stage}: error: params seeds is [0, 1]: give the job's seed "
                                               "with --seed (one of them)")
    assert not Path("models").exists() and not Path("runs").exists()


def test_a_training_ending_beside_another_keeps_its_log(tmp_path, monkeypatch):
    """Two trainings of one DVC repository end at once: the other removes dvclive's shared signal
    file between this one's check and removal (seen in a parallel `snakemake` run). The log is
    complete and no error reaches the stage; without end_live, Live.end raises."""
    import os

    from dvclive import Live

    from mbmt.training.live import STEP_COMPLETED_SIGNAL, end_live, log_epoch

    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    exists = os.path.exists

    def removed_by_the_other_training(path):
        found = exists(path)
        if found and Path(path).name == STEP_COMPLETED_SIGNAL:
            os.remove(path)
        return found

    monkeypatch.setattr(os.path, "exists", removed_by_the_other_training)
    for index, finish in enumerate((Live.end, end_live)):
        live = Live(str(tmp_path / f"live{index}"), dvcyaml=False, save_dvc_exp=False)
        log_epoch(live, {"train/loss/total": 1.5})
        assert exists(tmp_path / ".dvc" / "tmp" / "exps" / "run" / STEP_COMPLETED_SIGNAL)
        if finish is Live.end:
            with pytest.raises(FileNotFoundError):
                finish(live)
        else:
            finish(live)
        assert json.loads((tmp_path / f"live{index}" / "metrics.json").read_text())["train"]["loss"]["total"] == 1.5

"""`mbmt evaluate`: the metrics JSON of a model file on a whole split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mbmt import cli
from mbmt.config import load_params, model_settings
from mbmt.models import create_model, save_model
from mbmt.data.dataset import NYUv2Dataset
from mbmt.paths import live_dir, metrics_file, model_file, per_image_file, split_file
from mbmt.io import sha256_file


def save_untrained(name: str, change=None) -> None:
    """A model file as `mbmt train` writes it, with random weights (evaluation does not care),
    after ``change(state_dict)`` edits its tensors in place."""
    params = load_params()
    torch.manual_seed(0)
    model = create_model(model_settings(params, name), load_init=False)
    if change is not None:
        with torch.no_grad():
            change(model.state_dict())
    save_model(model_file(name, 0), model, extra={"input_size": [64, 64]}, settings=model_settings(params, name))


def set_params(block: str, **settings) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params[block].update(settings)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def set_evaluate(**settings) -> None:
    set_params("evaluate", **settings)


def evaluate(name: str) -> dict:
    assert cli.main(["evaluate", name]) == 0
    return json.loads(metrics_file(name, 0).read_text())


def test_metrics_blocks_averagings_and_context(project, processed_data):
    processed_data()
    save_untrained("mtnet")
    save_untrained("st_de")

    # One batch holding the whole split: per-pixel and per-batch averages are the same numbers.
    set_evaluate(batch_size=4, averaging="pixel")
    whole = evaluate("mtnet")
    assert list(whole) == ["semantic", "depth", "normal", "batch_averaged", "context"]
    for task in ("semantic", "depth", "normal"):
        for key, value in whole[task].items():
            assert whole["batch_averaged"][task][key] == pytest.approx(value, rel=1e-9, abs=1e-3 if key == "median" else 0)

    # Batches of one image: the per-pixel metrics do not change (but for float32 differences of the
    # forward pass at another batch size), MTAN's per-batch ones do.
    set_evaluate(batch_size=1, averaging="batch")
    single = evaluate("mtnet")
    assert single["context"]["averaging"] == "batch" and single["context"]["batch_size"] == 1
    for task in ("semantic", "depth", "normal"):
        for key, value in whole[task].items():
            assert single["pixel_averaged"][task][key] == pytest.approx(value, rel=1e-5), (task, key)
    assert single["depth"]["abs_err"] != pytest.approx(whole["depth"]["abs_err"], rel=1e-6)
    assert single["semantic"]["miou"] == pytest.approx(whole["semantic"]["miou"], rel=1e-5)  # one confusion matrix

    context = single["context"]
    assert context["split"] == "test" and context["images"] == 4 and context["dataset"] == "synthetic"
    assert context["checkpoint"] == str(model_file("mtnet", 0))
    assert context["checkpoint_sha256"] == sha256_file(model_file("mtnet", 0))
    assert context["protocol"] == "final"
    assert context["augment"] is None  # a model file without training's run settings
    assert context["provenance"]["profile"] == "tiny"
    # Which lock computed the metrics, and that the environment matched it (mbmt.environment.record).
    from mbmt.environment import lock_digest

    environment = context["provenance"]["environment"]
    assert environment["lock_sha256"] == lock_digest() and environment["matches_lock"] is True
    assert environment["drift"] == [] and environment["override"] is False

    # A single-task model reports its task only; the split is a parameter.
    set_evaluate(split="train")
    depth_only = evaluate("st_de")
    assert set(depth_only) == {"depth", "pixel_averaged", "context"}
    assert set(depth_only["pixel_averaged"]) == {"depth"}
    assert depth_only["context"]["split"] == "train" and depth_only["context"]["images"] == 8


def test_missing_model_file_is_one_clear_error(project, processed_data, capsys):
    processed_data()
    assert cli.main(["evaluate", "mtan"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == ("mbmt evaluate: error: models/mtan/seed0/model.pt: trained model not found; "
                             "run `mbmt train mtan --seed 0` first")
    assert not metrics_file("mtan", 0).exists() and not per_image_file("mtan", 0).exists()


def infinite_running_var(state: dict[str, torch.Tensor]) -> None:
    next(v for k, v in state.items() if k.endswith("running_var"))[0] = float("inf")


def overflowing_output(state: dict[str, torch.Tensor]) -> None:
    """Finite weights whose predictions overflow float32: the depth head's last layer scaled by 1e38."""
    last = [k for k in state if k.startswith("heads.depth") and k.endswith("weight")][-1]
    state[last].mul_(1.0e38)


@pytest.mark.parametrize(("change", "message"), [
    (infinite_running_var, "weights or buffers are not finite (1 tensors, e.g. "),
    (overflowing_output, "its metrics on split test are not finite (depth/"),
])
def test_non_finite_model_is_refused_and_writes_nothing(project, processed_data, capsys, change, message):
    """A model file from a diverged training: one error naming the file and the fix, no metrics file
    (a NaN in it would reach the report as a number)."""
    processed_data()
    save_untrained("st_de", change)
    assert cli.main(["evaluate", "st_de"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert error[0].startswith(f"mbmt evaluate: error: {model_file('st_de', 0)}: {message}")
    assert error[0].endswith("retrain it with a lower train.lr (`mbmt train st_de --seed 0`)")
    assert not metrics_file("st_de", 0).exists() and not per_image_file("st_de", 0).exists()


def test_per_image_rows_re_aggregate_to_the_split_metrics(project, processed_data):
    """metrics/<model>/seed<S>.images.npz: one row per test image, in split order, whose sums give
    the metrics file's pixel-averaged numbers (all but the median angle and the losses)."""
    from mbmt.evaluation import read_per_image
    from mbmt.metrics import SUMMABLE_METRICS, metrics_from_sums

    processed_data()
    save_untrained("mtnet")
    set_evaluate(batch_size=3, averaging="batch")  # batches of 3 and 1: rows do not depend on batching
    metrics = evaluate("mtnet")
    rows = read_per_image(per_image_file("mtnet", 0))
    assert rows["index"].tolist() == [0, 1, 2, 3]
    assert rows["confusion"].shape == (4, 13, 13) and rows["normal_within"].shape == (4, 3)
    labelled = [int((sample["semantic"] != -1).sum()) for sample in NYUv2Dataset(split_file("test"))]
    assert rows["confusion"].sum((1, 2)).tolist() == labelled  # every labelled pixel of each image, once
    summed = metrics_from_sums({key: value.sum(0) for key, value in rows.items() if key != "index"})
    for task, keys in SUMMABLE_METRICS.items():
        for key in keys:
            assert float(summed[task][key]) == pytest.approx(metrics["pixel_averaged"][task][key], rel=1e-12), (task, key)
    # A single-task model's file holds its task only.
    save_untrained("st_de")
    evaluate("st_de")
    assert set(read_per_image(per_image_file("st_de", 0))) == {"index", "depth_abs_sum", "depth_rel_sum", "depth_count"}


def logged(name: str, metric: str) -> list[float]:
    """The values of DVCLive metric ``metric`` of ``name``'s training, epoch by epoch."""
    import csv

    path = live_dir(name, 0) / "plots" / "metrics" / f"{metric}.tsv"
    with open(path, newline="") as f:
        return [float(row[metric.rsplit("/", 1)[-1]]) for row in csv.DictReader(f, delimiter="\t")]


def test_last_k_protocol_is_the_mean_of_the_last_validation_values(project, processed_data, capsys):
    """MTAN's protocol: the mean of the last k epochs' logged validation metrics; k=1 is the trained
    model's own numbers (validation and evaluation see the same split, pixel-averaged)."""
    processed_data()
    set_params("train", epochs=3, val_every=1)
    assert cli.main(["train", "st_de"]) == 0
    final = evaluate("st_de")
    assert final["context"]["protocol"] == "final" and "final" not in final

    set_evaluate(protocol="last_k", k=2)
    last_two = evaluate("st_de")
    values = {key: logged("st_de", f"val/depth/{key}") for key in ("loss", "abs_err", "rel_err")}
    assert all(len(v) == 3 for v in values.values())
    for key, series in values.items():
        assert last_two["depth"][key] == pytest.approx((series[1] + series[2]) / 2, rel=1e-12), key
    assert last_two["final"] == {"depth": final["depth"]}  # the trained model's numbers kept beside
    context = last_two["context"]
    assert (context["protocol"], context["k"], context["epochs_averaged"]) == ("last_k", 2, [2, 3])
    assert context["augment"] == {True: "mtan-like", False: "none"}[load_params()["train"]["augment"]]

    set_evaluate(k=1)
    last = evaluate("st_de")
    for key, number in final["depth"].items():
        assert last["depth"][key] == pytest.approx(number, rel=1e-5), key
    capsys.readouterr()

    # More epochs than were trained: one error naming the keys and the fix, no metrics file.
    metrics_file("st_de", 0).unlink()
    set_evaluate(k=4)
    assert cli.main(["evaluate", "st_de"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "last 4 epochs" in error[0] and "validated epochs: 1, 2, 3" in error[0]
    assert "train.val_every: 1" in error[0] and "train.epochs >= 4" in error[0] and "evaluate.protocol: final" in error[0]
    assert not metrics_file("st_de", 0).exists()

    # Batch averaging: the logged val_batch curves, MTAN's per-batch numbers over its test pairs;
    # for k=1 the trained model's batch averages with evaluate.batch_size 2 (MTAN's test batch).
    set_evaluate(k=2, averaging="batch", batch_size=2)
    batch = evaluate("st_de")
    for key in ("loss", "abs_err", "rel_err"):
        series = logged("st_de", f"val_batch/depth/{key}")
        assert batch["depth"][key] == pytest.approx((series[1] + series[2]) / 2, rel=1e-12), key
        assert batch["depth"][key] != pytest.approx(last_two["depth"][key], rel=1e-9), key  # not the pixel curves
    assert batch["context"]["val_batch_size"] == 2 and "val_batch_size" not in last_two["context"]
    set_evaluate(k=1)
    last_batch = evaluate("st_de")
    for key, number in last_batch["final"]["depth"].items():
        assert last_batch["depth"][key] == pytest.approx(number, rel=1e-5), key


def test_last_k_needs_every_one_of_the_last_epochs_validated(project, processed_data, capsys):
    processed_data()
    set_params("train", epochs=4, val_every=2)
    assert cli.main(["train", "st_de"]) == 0
    set_evaluate(protocol="last_k", k=2)
    assert cli.main(["evaluate", "st_de"]) == 2
    error = capsys.readouterr().err
    assert "epochs 3-4 of train.epochs = 4" in error and "validated epochs: 2, 4" in error
    set_evaluate(k=1)  # the last epoch was validated
    assert evaluate("st_de")["depth"]["abs_err"] == pytest.approx(logged("st_de", "val/depth/abs_err")[-1], rel=1e-12)


def write_curves(directory: Path, curves: dict[str, list[float]]) -> None:
    """DVCLive's layout: plots/metrics/<name>.tsv with columns timestamp, step (from 0), value."""
    for name, values in curves.items():
        path = directory / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        column = name.rsplit("/", 1)[-1]
        rows = "".join(f"{1000 + step}\t{step}\t{value}\n" for step, value in enumerate(values))
        path.write_text(f"timestamp\tstep\t{column}\n{rows}")


def test_last_k_with_batch_averaging_by_hand(tmp_path):
    """Hand-written logs of 4 epochs, k=3: each metric's mean over epochs 2-4 of its own curve:
    batch averages from val_batch/, mIoU and pixel accuracy (one confusion matrix) from val/."""
    from mbmt.errors import MbmtError
    from mbmt.evaluation.protocol import last_k_blocks

    write_curves(tmp_path, {
        "val/semantic/loss": [9, 9, 9, 9], "val_batch/semantic/loss": [4, 1, 2, 3],
        "val/semantic/miou": [10, 20, 30, 40], "val/semantic/pix_acc": [50, 60, 70, 80],
        "val/depth/abs_err": [9, 9, 9, 9], "val_batch/depth/abs_err": [1.0, 0.5, 0.25, 0.75],
    })
    template = {"semantic": {"loss": None, "miou": None, "pix_acc": None}, "depth": {"abs_err": None}}
    blocks, epochs = last_k_blocks(tmp_path, template, 3, 4, "mbmt train x", "batch")
    assert epochs == [2, 3, 4]
    assert blocks == {"semantic": {"loss": 2.0, "miou": 30.0, "pix_acc": 70.0}, "depth": {"abs_err": 0.5}}
    pixel, _ = last_k_blocks(tmp_path, template, 3, 4, "mbmt train x", "pixel")
    assert pixel == {"semantic": {"loss": 9.0, "miou": 30.0, "pix_acc": 70.0}, "depth": {"abs_err": 9.0}}

    # A log from before the batch curves: one error with the fix.
    old = tmp_path / "old"
    write_curves(old, {"val/depth/abs_err": [1.0, 2.0]})
    with pytest.raises(MbmtError, match=r"no batch-averaged curves .*retrain it \(`mbmt train x`\) or set evaluate.averaging: pixel"):
        last_k_blocks(old, {"depth": {"abs_err": None}}, 1, 2, "mbmt train x", "batch")

"""`mbmt evaluate`: the metrics JSON of a model file on a whole split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mbmt import cli
from mbmt.config import load_params
from mbmt.models import create_model, save_model
from mbmt.paths import metrics_file, model_file
from mbmt.io import sha256_file


def save_untrained(name: str, change=None) -> None:
    """A model file as `mbmt train` writes it, with random weights (evaluation does not care),
    after ``change(state_dict)`` edits its tensors in place."""
    params = load_params()
    torch.manual_seed(0)
    model = create_model(name, params, load_init=False)
    if change is not None:
        with torch.no_grad():
            change(model.state_dict())
    save_model(model_file(name, 0), model, name=name, params=params, extra={"input_size": [64, 64]})


def set_evaluate(**settings) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["evaluate"].update(settings)
    Path("params.yaml").write_text(yaml.safe_dump(params))


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
    assert context["provenance"]["profile"] == "tiny"

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
    assert not metrics_file("mtan", 0).exists()


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
    assert error[0].endswith("retrain it with a lower train.lr (`mbmt train st_de`)")
    assert not metrics_file("st_de", 0).exists()

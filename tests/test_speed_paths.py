"""The trainer's speed settings keep what is computed: the device-held split gives the DataLoader's
run bit for bit, the device-side finiteness guard (sync_every > 1) trains as the per-step one up to
fused Adam's rounding and still stops before a bad update, a larger validation batch gives the same
pixel-averaged metrics, and a compiled step trains as the eager one."""

from __future__ import annotations

import pytest
import torch

from test_ddp import assert_same_moments

from mbmt.config import load_params
from mbmt.stages.train import unpack as train_job
from mbmt.training import distributed
from mbmt.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from mbmt.training.guard import DivergedError
from mbmt.training.trainer import Trainer

MODEL = "mtnet"  # three tasks (DWA), BatchNorm: everything the step does
# Adam's moments (of every parameter, relative to each one's norm) of the device-side guard's run
# against the per-step one's. Measured on CPU (test_device_side_guard_trains_as_the_per_step_one):
# fused Adam's other rounding moves them by at most 1e-7; one update in four skipped (found_inf at
# step 3 of each epoch) by 0.13 to 1.3.
GUARD_MOMENT_RTOL = 1.0e-4


def trainer(root, name: str = MODEL, device: str = "cpu", **train) -> Trainer:
    """A Trainer of the project's params with ``train`` settings changed, its runs under ``root``."""
    params = load_params(["params.yaml"])
    params["train"].update(train)
    return Trainer(train_job(params, name), distributed.setup(device), seed=params["seeds"][0], run_root=root, progress=False)


def fitted(root, name: str = MODEL, device: str = "cpu", **train) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """(weights, per-epoch log without timings) of a whole run."""
    run = trainer(root, name, device, **train)
    run.fit()
    log = [{k: v for k, v in entry["metrics"].items() if k != "train/images_per_second"} for entry in run.history]
    return run.module.state_dict(), log


def optimizer_state(root, name: str = MODEL) -> dict:
    """The optimiser state in the checkpoint of the one run of ``name`` under ``root``."""
    [path] = (root / name).glob(f"*/{CHECKPOINT_FILE}")
    return load_checkpoint(path)["optimizer"]


def test_default_is_the_device_held_split_and_equals_the_dataloader_run_bit_for_bit(project, processed_data, tmp_path):
    processed_data()
    defaults = load_params(["params.yaml"])["train"]
    assert defaults["split_on_device"] is True and defaults["sync_every"] == "auto"
    assert trainer(tmp_path / "probe").sync_every == 1  # auto on CPU: every step, as before

    on_device, on_device_log = fitted(tmp_path / "device")
    loader, loader_log = fitted(tmp_path / "loader", split_on_device=False, num_workers=2)
    assert on_device_log == loader_log  # losses, DWA weights, validation metrics: exactly
    assert on_device.keys() == loader.keys()
    assert all(torch.equal(on_device[k], loader[k]) for k in loader)


def test_device_side_guard_trains_as_the_per_step_one(project, processed_data, tmp_path):
    """Fused Adam makes the same update up to float rounding; as in tests/test_ddp.py, a small lr
    keeps Adam's first updates (lr x the sign of a gradient that may be float noise) from
    amplifying that rounding, so that the comparison is tight. The gradients of every step show in
    Adam's moments (the tiny-lr weights would not show a skipped or altered update)."""
    processed_data()
    lr = 1.0e-6
    _, every_step = fitted(tmp_path / "every", lr=lr)
    _, every_third = fitted(tmp_path / "third", lr=lr, sync_every=3)
    assert_same_moments(optimizer_state(tmp_path / "third"), optimizer_state(tmp_path / "every"), rtol=GUARD_MOMENT_RTOL)
    assert [entry.keys() for entry in every_third] == [entry.keys() for entry in every_step]
    for a, b in zip(every_third, every_step):
        for key in b:
            if "loss" in key or "weight" in key or key == "train/lr":
                assert a[key] == pytest.approx(b[key], rel=1e-4), key
            else:  # metrics counted in pixels: a few boundary pixels of 16,384 may flip
                assert a[key] == pytest.approx(b[key], abs=0.05), key


def test_device_side_guard_stops_before_the_bad_update_and_keeps_the_checkpoint(project, processed_data, tmp_path):
    """A NaN depth output at epoch 2, step 2, read back only at step 3: the same error as with a
    read-back every step, no update from step 2 on, epoch 1's checkpoint kept."""
    processed_data()
    run = trainer(tmp_path, sync_every=3)
    forwards, before_bad = {"train": 0}, {}

    def nan_at_sixth_training_step(module, inputs, outputs):
        if module.training:
            forwards["train"] += 1
            if forwards["train"] == 6:  # 4 steps per epoch
                before_bad.update({k: p.detach().clone() for k, p in run.module.named_parameters()})
                outputs["depth"] = torch.full_like(outputs["depth"], float("nan"))
        return outputs

    run.module.register_forward_hook(nan_at_sixth_training_step)
    with pytest.raises(DivergedError, match=r"the depth loss is nan at epoch 2 of 2, step 2 of 4; "
                                                 r"training stopped before that update and the last good checkpoint"):
        run.fit()
    assert forwards["train"] == 7, "read back after step 3, not at every step"
    after = dict(run.module.named_parameters())
    assert all(torch.equal(after[k], before_bad[k]) for k in before_bad), "an update was made after the bad step"
    kept = load_checkpoint(run.checkpoint_path)
    assert run.checkpoint_path.name == CHECKPOINT_FILE and kept["epoch"] == 1 and len(kept["history"]) == 1


def test_a_run_resumes_with_another_sync_every(project, processed_data, tmp_path):
    """sync_every is not part of the run's identity: epoch 1 read back every step, epoch 2 resumed
    from its checkpoint with the device-side guard (fused Adam, whatever the checkpoint recorded)."""
    processed_data()
    first = trainer(tmp_path)
    first.epochs = 1
    first.fit()
    resumed = trainer(tmp_path, sync_every=3)
    assert resumed.epoch == 1 and resumed.run_dir == first.run_dir
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    resumed.fit()
    assert load_checkpoint(resumed.checkpoint_path)["epoch"] == 2


def test_validation_batch_does_not_change_the_validation_metrics(project, processed_data, tmp_path):
    """Neither averaging: the batch averages are over MTAN's test batches of 2 images, whatever
    batches the validation pass runs in (1 cuts each in two, 3 straddles them)."""
    processed_data()
    runs = [trainer(tmp_path / f"batch{size}", val_batch_size=size) for size in (1, 3, 4)]
    assert [run.val_batch for run in runs] == [1, 3, 4]
    first, *others = [run.validate() for run in runs]
    assert first.keys() == {"pixel", "batch"}
    for other in others:
        assert other.keys() == first.keys()
        for averaging, blocks in first.items():
            for task in blocks:
                for key, value in blocks[task].items():
                    assert other[averaging][task][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (averaging, task, key)


@pytest.mark.slow
def test_compiled_step_trains_as_the_eager_one(project, processed_data, tmp_path):
    """Eight steps (two epochs): the compiled step's gradients at every step, seen in Adam's
    moments, are the eager step's up to Inductor's other rounding.

    At the tiny lr the weights hardly move, so every step's gradients are taken at (nearly) the same
    weights in both runs and the comparison is tight. The weights themselves cannot be compared:
    at a learning rate where they move (the tiny preset's 1e-3), Adam's first updates, lr x the
    sign of a gradient, turn rounding alone into other trajectories (measured on CPU after these
    eight steps: plain against fused Adam, both eager, differ by a median 0.57 of a parameter's
    moment and 0.08 of its weights' movement, as much as a broken step would).
    Measured on CPU: Inductor's rounding moves a moment by at most 7e-3 of its norm (floored at 1e-6
    of the whole model's: the BatchNorm biases that feed another normalisation get float noise alone);
    gradients halved in the compiled run by 0.5 to 0.75 (Adam's weights would not see that scale),
    the optimiser step skipped once by a median 0.27.
    """
    import torch._dynamo

    processed_data()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    settings = {"epochs": 2, "val_every": 0, "lr": 1.0e-6}  # small lr: see the guard's test above
    _, eager = fitted(tmp_path / "eager", "st_ss", **settings)
    _, compiled = fitted(tmp_path / "compiled", "st_ss", **settings, compile="default")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    assert not torch._dynamo.utils.counters["graph_break"], "the forward pass broke into pieces"
    assert_same_moments(optimizer_state(tmp_path / "compiled", "st_ss"), optimizer_state(tmp_path / "eager", "st_ss"),
                        rtol=5.0e-2, floor=1.0e-6)
    for a, b in zip(compiled, eager, strict=True):
        for key, value in b.items():
            assert a[key] == pytest.approx(value, rel=1e-4), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_graphs_and_the_device_guard_train_as_the_plain_loop(project, processed_data, tmp_path):
    """CUDA graphs (reduce-overhead), sync_every auto (50: the device-side guard, fused Adam) and the
    device-held split against the plain loop, in fp32 (bf16 would hide the comparison in its rounding)."""
    processed_data()
    settings = {"lr": 1.0e-6, "amp": False}
    _, plain = fitted(tmp_path / "plain", "st_ss", "cuda", **settings, sync_every=1, split_on_device=False)
    _, fast = fitted(tmp_path / "fast", "st_ss", "cuda", **settings, compile="reduce-overhead")
    for a, b in zip(fast, plain):
        for key in b:
            if "loss" in key:
                assert a[key] == pytest.approx(b[key], rel=1e-3), key


def test_a_compile_failure_is_one_error_naming_the_setting(project, processed_data, tmp_path, monkeypatch):
    """No silent eager fallback: torch.compile failing on the step stops the run with the fix."""
    import torch._dynamo.exc

    from mbmt.training.compile import CompileError

    def no_toolchain(*args, **kwargs):
        def forward(*a, **k):
            raise torch._dynamo.exc.TorchDynamoException("no C compiler found")
        return forward

    processed_data()
    monkeypatch.setattr(torch, "compile", no_toolchain)
    run = trainer(tmp_path, "st_ss", compile="default")
    with pytest.raises(CompileError, match=r"train.compile: default \(TorchDynamoException: no C compiler found\); "
                                           r"set train.compile: none"):
        run.fit()

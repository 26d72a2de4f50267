"""Every host/device crossing of training, evaluation, prediction and the benchmarks, run on a
simulated CUDA device (tests/offhost.py): a device tensor read by numpy or mixed with a host
tensor fails here as on a GPU, and the simulated runs compute exactly what the CPU runs compute
(the same CPU kernels in the same order: weights, logs and metrics are compared for equality)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from offhost import OffHostTensor, host, simulated_cuda

from mbmt.config import load_params, model_settings

MODEL = "mtnet"  # three tasks (DWA, every metric), BatchNorm buffers


def trainer(root, device: str, **train):
    from mbmt.training import distributed
    from mbmt.stages.train import unpack as train_job
    from mbmt.training.trainer import Trainer

    params = load_params(["params.yaml"])
    params["train"].update(train)
    return Trainer(train_job(params, MODEL), distributed.setup(device), seed=params["seeds"][0], run_root=root, progress=False)


def fitted(root, device: str, **train) -> tuple[dict[str, torch.Tensor], list[dict], dict]:
    """(weights on the host, per-epoch log without timings, summary) of a whole run."""
    run = trainer(root, device, **train)
    summary = run.fit()
    log = [{k: v for k, v in entry["metrics"].items() if k != "train/images_per_second"} for entry in run.history]
    return {k: host(v).clone() for k, v in run.module.state_dict().items()}, log, summary


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_simulated_device_refuses_what_cuda_refuses():
    with simulated_cuda():
        x = torch.ones(3, device="cuda")
        assert isinstance(x, OffHostTensor) and x.device == torch.device("cuda", 0) and x.is_cuda
        with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
            np.asarray(x)
        with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
            x.numpy()
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            x + torch.ones(3)
        assert (x + torch.tensor(1.0)).tolist() == [2.0] * 3  # a 0-dim host tensor is allowed, as on CUDA
        back = x.cpu()
        assert type(back) is torch.Tensor and back.numpy().tolist() == [1.0] * 3
        model = torch.nn.Linear(3, 2).to("cuda")
        assert isinstance(model.weight, OffHostTensor) and isinstance(model.weight, torch.nn.Parameter)


def test_training_on_the_device_computes_what_the_cpu_computes(project, processed_data, tmp_path):
    """CUDA's defaults (sync_every auto = 50: the device-side guard and fused Adam; validation batch
    16; the device-held split) and the per-step read-back with the DataLoader (pin_memory asked for)."""
    processed_data()
    with simulated_cuda():
        probe = trainer(tmp_path / "probe", "cuda")
        assert (probe.sync_every, probe.val_batch) == (50, 16)
        assert all(group["fused"] for group in probe.optimizer.param_groups)
        guard, guard_log, summary = fitted(tmp_path / "guard", "cuda")
        loader, loader_log, _ = fitted(tmp_path / "loader", "cuda", sync_every=1, split_on_device=False)
    assert summary["compile"] == {"mode": "none", "compiled": False, "cuda_graphs": False}
    cpu_guard, cpu_guard_log, _ = fitted(tmp_path / "cpu_guard", "cpu", sync_every=50, val_batch_size=16)
    cpu_loader, cpu_loader_log, _ = fitted(tmp_path / "cpu_loader", "cpu", sync_every=1, split_on_device=False,
                                           val_batch_size=16)
    assert guard_log == cpu_guard_log and loader_log == cpu_loader_log
    assert_same_weights(guard, cpu_guard)
    assert_same_weights(loader, cpu_loader)


def test_a_resumed_run_places_adams_step_for_its_own_fused_flag(project, processed_data, tmp_path):
    """A checkpoint of plain Adam (sync_every 1) resumed with fused Adam (sync_every 3) and back: each
    `step` where that Adam keeps it (fused: on the device, float32; plain: on the host), and training
    goes on."""
    from mbmt.training.checkpoint import load_checkpoint

    processed_data()
    with simulated_cuda():
        first = trainer(tmp_path, "cuda", sync_every=1)
        first.epochs = 1
        first.fit()
        fused = trainer(tmp_path, "cuda", sync_every=3)
        assert fused.epoch == 1 and all(group["fused"] for group in fused.optimizer.param_groups)
        steps = [state["step"] for state in fused.optimizer.state.values()]
        assert steps and all(isinstance(s, OffHostTensor) and s.dtype == torch.float32 for s in steps)
        fused.fit()  # to epoch 2
        plain = trainer(tmp_path, "cuda", sync_every=1)
        plain.epochs = 3
        assert plain.epoch == 2 and not any(group["fused"] for group in plain.optimizer.param_groups)
        steps = [state["step"] for state in plain.optimizer.state.values()]
        assert steps and all(type(s) is torch.Tensor and s.device.type == "cpu" for s in steps)
        plain.fit()
    assert load_checkpoint(plain.checkpoint_path)["epoch"] == 3


def test_evaluation_on_the_device_writes_the_cpu_metrics(project, processed_data):
    """`mbmt evaluate`'s pass (per-image rows, both averagings, the finiteness checks) on the device."""
    from mbmt.evaluation import evaluate_model_file
    from mbmt.models import create_model, save_model
    from mbmt.paths import model_file
    from mbmt.stages.evaluate import unpack

    processed_data()
    params = load_params(["params.yaml"])
    save_model(model_file(MODEL, 0), create_model(model_settings(params, MODEL), seed=0), settings=model_settings(params, MODEL))
    cpu_metrics, cpu_rows = evaluate_model_file(MODEL, 0, **vars(unpack(params)))
    params["train"]["device"] = "cuda"
    with simulated_cuda():
        metrics, rows = evaluate_model_file(MODEL, 0, **vars(unpack(params)))
    assert {k: v for k, v in metrics.items() if k != "context"} == {k: v for k, v in cpu_metrics.items() if k != "context"}
    assert rows.keys() == cpu_rows.keys()
    for key in rows:
        assert type(rows[key]) is np.ndarray and np.array_equal(rows[key], cpu_rows[key]), key


def test_metric_rows_and_finiteness_read_device_tensors_back():
    """Crossings a caller may hand over on the device: a batch's index, a state dict."""
    from mbmt.device import non_finite_tensors
    from mbmt.metrics import MetricAccumulator

    generator = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 8, 8, generator=generator) + 0.5
    batch = {"depth": depth, "index": torch.tensor([3, 5])}
    outputs = {"depth": depth + 0.1}
    cpu = MetricAccumulator(["depth"], per_image=True)
    cpu.update(outputs, batch)
    with simulated_cuda():
        device = MetricAccumulator(["depth"], per_image=True)
        device.update({k: v.to("cuda") for k, v in outputs.items()}, {k: v.to("cuda") for k, v in batch.items()})
        assert device.compute() == cpu.compute()
        rows = device.per_image_rows()
        state = {"bad": torch.tensor([1.0, float("nan")], device="cuda"), "good": torch.ones(2, device="cuda"),
                 "count": torch.zeros(2, dtype=torch.int64, device="cuda")}
        assert non_finite_tensors(state) == ["bad"]
    assert all(np.array_equal(rows[key], value) for key, value in cpu.per_image_rows().items())


def test_prediction_on_the_device_gives_the_cpu_arrays(tiny_params):
    from mbmt.models import create_model
    from mbmt.predict import predict

    model = create_model(model_settings(tiny_params, MODEL), seed=0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = predict(model, images)
    with simulated_cuda():
        result = predict(model.to("cuda"), images)
    for task, array in expected.items():
        assert type(result[task]) is np.ndarray and np.array_equal(result[task], array), task


def test_benchmark_steps_run_on_the_device(project):
    """benchmarks/bench_training.py's timed blocks (bare step, trainer step, loader, checkpoint,
    validation) and benchmarks/bench_memory.py's measurement, on the device."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_memory
    import bench_training

    from mbmt.training import distributed

    params = bench_training.benchmark_params("tiny", 1, 0, "cuda")
    bench_training.write_project(params, params["train"]["batch_size"])
    with simulated_cuda():
        result = bench_training.measure("st_ss", params, distributed.setup("cuda"), steps=1, repeats=1)
        memory = bench_memory.measure_one("tiny", "st_ss", "cuda", 1)
    assert result["trainer"] > 0 and result["memory_gib"] == 0  # the simulation's memory statistics
    assert memory == {"allocated_gib": 0, "reserved_gib": 0}

"""The two implementations of the training step's finiteness guard (mbmt.training.guard) agree on
what they report; the trainer's tests (test_train, test_speed_paths, test_offhost) run both in training."""

from __future__ import annotations

import math

import torch

from mbmt.training.guard import DeviceGuard, HostGuard, loss_guard

CPU = torch.device("cpu")


class Recorder:
    """Stands in for the optimiser: fused Adam reads ``found_inf``."""

    found_inf = None


def run(guard, steps):
    optimizer, updates = Recorder(), []
    for step, values in enumerate(steps):
        kept, update = guard.before_update(torch.tensor(values), step, optimizer)
        updates.append(update and not (optimizer.found_inf is not None and bool(optimizer.found_inf)))
    return updates, guard.first_bad()


def test_both_guards_stop_updating_at_the_first_bad_step_and_report_it():
    steps = [[1.0, 2.0], [1.0, math.nan], [math.inf, 1.0]]
    host_updates, (host_step, host_values) = run(HostGuard(), steps[:2])  # the trainer stops at its read-back
    device_updates, (device_step, device_values) = run(DeviceGuard(CPU, 2), steps)
    assert host_updates == [True, False] and device_updates == [True, False, False]
    assert host_step == device_step == 1
    assert host_values[0] == device_values[0] == 1.0 and math.isnan(host_values[1]) and math.isnan(device_values[1])
    assert run(HostGuard(), steps[:1])[1] is None and run(DeviceGuard(CPU, 2), steps[:1])[1] is None


def test_the_guard_follows_sync_every():
    assert isinstance(loss_guard(1, CPU, 3), HostGuard) and loss_guard(1, CPU, 3).fused_adam is None
    assert isinstance(loss_guard(50, CPU, 3), DeviceGuard) and loss_guard(50, CPU, 3).fused_adam is True
    assert loss_guard(1, CPU, 3).loss_device(CPU) == "cpu"

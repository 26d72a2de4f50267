"""Reporting protocols: which numbers of a trained model the metrics file reports.

- ``final`` (the default): the trained model evaluated on the split (mbmt.evaluation.evaluate).
- ``last_k``: MTAN's protocol (its README): the mean of the test metrics over the last k epochs.
  Training validates on the test split and logs the metrics of every validated epoch to DVCLive
  (``val/<task>/<metric>``, pixel-averaged), so this costs no extra evaluation; it needs the last
  k epochs all validated (train.val_every: 1, train.epochs >= k).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mbmt.errors import MbmtError

# How training's validation passes average (mbmt.training.trainer), and so the averaging of the
# logged curves that last_k reports: pixel, because it does not depend on how the split is batched
# or sharded over ranks, so the curves are the same on 1 or N processes (evaluate reports both).
VAL_AVERAGING = "pixel"


def read_curve(live_dir: Path, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of DVCLive metric ``metric`` (e.g. "train/loss/semantic"), or None if not logged."""
    path = Path(live_dir) / "plots" / "metrics" / f"{metric}.tsv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    column = metric.rsplit("/", 1)[-1]
    # DVCLive counts steps from 0; the trainer takes one step per epoch.
    return np.array([int(r["step"]) + 1 for r in rows]), np.array([float(r[column]) for r in rows])


def last_k_blocks(live_dir: Path, template: Mapping[str, Mapping[str, object]], k: int,
                  epochs: int, train: str) -> tuple[dict[str, dict[str, float | None]], list[int]]:
    """The mean over the last ``k`` of ``epochs`` epochs of each validation metric logged in
    ``live_dir``, as blocks shaped like ``template`` ({task: {metric: ...}}); and those epochs.
    ``train``: the command that retrains the model, for the error's fix.
    A metric never logged (no valid pixel in the split) is None."""
    wanted = list(range(epochs - k + 1, epochs + 1))
    fix = (f"validate every epoch (train.val_every: 1) for at least evaluate.k = {k} epochs "
           f"(train.epochs >= {k}) and retrain (`{train}`), lower evaluate.k, "
           "or set evaluate.protocol: final")
    blocks: dict[str, dict[str, float | None]] = {}
    logged_any = False
    for task, metrics in template.items():
        blocks[task] = {}
        for key in metrics:
            curve = read_curve(live_dir, f"val/{task}/{key}")
            if curve is None:
                blocks[task][key] = None
                continue
            logged_any = True
            logged = dict(zip(curve[0].tolist(), curve[1].tolist()))
            missing = [epoch for epoch in wanted if epoch not in logged]
            if k > epochs or missing:
                validated = sorted(logged)
                raise MbmtError(
                    f"{live_dir}: evaluate.protocol last_k needs the validation metrics of the last {k} epochs "
                    f"(epochs {wanted[0] if k <= epochs else 1}-{epochs} of train.epochs = {epochs}); "
                    f"validated epochs: {_ranges(validated)}; {fix}")
            blocks[task][key] = float(np.mean([logged[epoch] for epoch in wanted]))
    if not logged_any:
        raise MbmtError(f"{live_dir}: no validation metrics logged (val/<task>/<metric>); "
                        f"evaluate.protocol last_k averages them: {fix}")
    return blocks, wanted


def _ranges(epochs: list[int]) -> str:
    if not epochs:
        return "none"
    return ", ".join(str(e) for e in epochs) if len(epochs) <= 8 else f"{epochs[0]}, ..., {epochs[-1]} ({len(epochs)})"

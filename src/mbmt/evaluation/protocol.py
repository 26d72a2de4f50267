"""Reporting protocols: which numbers of a trained model the metrics file reports.

- ``final`` (the default): the trained model evaluated on the split (mbmt.evaluation.evaluate).
- ``last_k``: MTAN's protocol (its README): the mean of the test metrics over the last k epochs.
  Training validates on the test split and logs the metrics of every validated epoch to DVCLive
  in both averagings of mbmt.metrics (`val_record`), so this costs no extra evaluation; it needs
  the last k epochs all validated (train.val_every: 1, train.epochs >= k). With evaluate.averaging
  batch it is MTAN's number exactly as MTAN computes it: the mean over the last 10 epochs of the
  test metrics averaged per batch of MTAN's test batch (VAL_METRIC_BATCH).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mbmt.errors import MbmtError
from mbmt.metrics import AVERAGINGS, BATCH_MEANS

# The DVCLive prefix of training's validation curves, by averaging. The pixel-averaged ones keep
# the plain `val/<task>/<metric>` names (dvc.yaml's plots, mbmt.tasks' headline curves); the batch
# averages are logged as `val_batch/<task>/<metric>` for the metrics that differ between the two
# (mbmt.metrics.BATCH_MEANS: mIoU and pixel accuracy come from one confusion matrix in both).
VAL_CURVE_PREFIX = {"pixel": "val", "batch": "val_batch"}
# MTAN's test batch: lorenmt/mtan's im2im_pred/model_segnet_mtan.py loads the test split unshuffled
# in batches of batch_size = 2, and im2im_pred/utils.py (multi_task_trainer) averages each batch's
# errors over len(test_loader). Training's batch-averaged validation is over consecutive pairs of
# test images in split order, as there, whatever train.val_batch_size the pass runs in and however
# many processes share it (the pairs are sharded whole: mbmt.training.distributed.ShardSampler).
VAL_METRIC_BATCH = 2


def val_curve(task: str, key: str, averaging: str) -> str:
    """The logged validation curve of metric ``key`` of ``task`` under ``averaging``."""
    batch = averaging == "batch" and key in BATCH_MEANS[task]
    return f"{VAL_CURVE_PREFIX['batch' if batch else 'pixel']}/{task}/{key}"


def val_record(val: Mapping[str, Mapping[str, Mapping[str, float | None]]]) -> dict[str, float]:
    """The curves of one validation pass, {averaging: {task: {metric: value}}}, by name: each
    metric once per curve (a metric without a single valid pixel in the split is None: nothing to plot)."""
    record: dict[str, float] = {}
    for averaging in AVERAGINGS:
        for task, metrics in val.get(averaging, {}).items():
            for key, value in metrics.items():
                curve = val_curve(task, key, averaging)
                if value is not None and curve not in record:
                    record[curve] = value
    return record


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
                  epochs: int, train: str, averaging: str = "pixel") -> tuple[dict[str, dict[str, float | None]], list[int]]:
    """The mean over the last ``k`` of ``epochs`` epochs of each validation metric logged in
    ``live_dir`` under ``averaging``, as blocks shaped like ``template`` ({task: {metric: ...}});
    and those epochs. ``train``: the command that retrains the model, for the error's fix.
    A metric never logged (no valid pixel in the split) is None."""
    wanted = list(range(epochs - k + 1, epochs + 1))
    fix = (f"validate every epoch (train.val_every: 1) for at least evaluate.k = {k} epochs "
           f"(train.epochs >= {k}) and retrain (`{train}`), lower evaluate.k, "
           "or set evaluate.protocol: final")
    curves = Path(live_dir) / "plots" / "metrics"
    if averaging == "batch" and (curves / VAL_CURVE_PREFIX["pixel"]).is_dir() \
            and not (curves / VAL_CURVE_PREFIX["batch"]).is_dir():
        raise MbmtError(f"{live_dir}: the validation log has no batch-averaged curves "
                        f"({VAL_CURVE_PREFIX['batch']}/<task>/<metric>): the model was trained before training "
                        f"logged them; retrain it (`{train}`) or set evaluate.averaging: pixel")
    blocks: dict[str, dict[str, float | None]] = {}
    logged_any = False
    for task, metrics in template.items():
        blocks[task] = {}
        for key in metrics:
            name = val_curve(task, key, averaging)
            curve = read_curve(live_dir, name)
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
        raise MbmtError(f"{live_dir}: no validation metrics logged ({VAL_CURVE_PREFIX[averaging]}/<task>/<metric>); "
                        f"evaluate.protocol last_k averages them: {fix}")
    return blocks, wanted


def _ranges(epochs: list[int]) -> str:
    if not epochs:
        return "none"
    return ", ".join(str(e) for e in epochs) if len(epochs) <= 8 else f"{epochs[0]}, ..., {epochs[-1]} ({len(epochs)})"

"""The training's live log (DVCLive): one step per epoch of the metrics the trainer records, the
progress line of each epoch, and an end that tolerates parallel trainings of one DVC repository."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mbmt.tasks import HEADLINE_METRICS

LIVE_DIR = "live"
# dvclive.vscode's signal file, shared by every Live of a DVC repository (end_live).
STEP_COMPLETED_SIGNAL = "DVCLIVE_STEP_COMPLETED"


def open_live(directory: Path, history: Iterable[dict[str, Any]]):
    """The DVCLive log in ``directory``, rebuilt from a checkpoint's ``history`` (its entries'
    "metrics", in epoch order), so that it matches the weights."""
    from dvclive import Live

    # dvcyaml=False, save_dvc_exp=False: parallel jobs must not touch dvc.yaml or take DVC's lock.
    live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, resume=False)
    for entry in history:
        log_epoch(live, entry["metrics"])
    return live


def end_live(live) -> None:
    """``live.end()``, safe while other trainings of the same DVC repository end too.

    The last thing ``Live.end`` does (dvclive 3.49) is to remove the repository-wide signal file
    .dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED, which only tells the VS Code extension that a step
    ended, if it exists: a training that ends between another's check and removal gets
    FileNotFoundError after its log is complete (the same check-then-remove race as
    treeverse/dvclive#624). Any other missing file is still an error.
    """
    try:
        live.end()
    except FileNotFoundError as exc:
        if Path(exc.filename or "").name != STEP_COMPLETED_SIGNAL:
            raise


def log_epoch(live, record: dict[str, float]) -> None:
    for key, value in record.items():
        live.log_metric(key, value)
    live.next_step()


# The validation metrics the progress line shows: each task's headline metric.
HEADLINE_CURVES = {headline.curve for headline in HEADLINE_METRICS.values()}


def describe_epoch(name: str, epoch: int, epochs: int, record: dict[str, float]) -> str:
    losses = ", ".join(f"{key.rsplit('/', 1)[1]} {value:.4f}" for key, value in record.items()
                       if key.startswith("train/loss/") and not key.endswith("/total"))
    line = (f"{name} epoch {epoch + 1}/{epochs}: loss {record['train/loss/total']:.4f} ({losses}), "
            f"lr {record['train/lr']:.3g}, {record['train/images_per_second']:.1f} img/s")
    val = [f"{key[4:]} {value:.4g}" for key, value in record.items() if key in HEADLINE_CURVES]
    return line + (f"; val {', '.join(val)}" if val else "")

"""Handing results between the two front ends on one checkout.

Snakemake decides from modification times and its records in .snakemake/; DVC from the hashes in
dvc.lock, and it does not keep modification times. So after a Snakemake run its outputs are
recorded for DVC (``record_snakemake_run``, the Snakefile's onsuccess handler), and after DVC has
written files (a pull, a checkout) Snakemake is told they are current (``adopt``, `mbmt pull`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mbmt.dvc_yaml import DVC_YAML, GENERATE_COMMAND, render_dvc_yaml
from mbmt.errors import MbmtError
from mbmt.paths import PARAMS_FILE

RECORD_COMMAND = "dvc commit --no-relink --force"  # hash the outputs as they are, without rewriting them
# Snakemake's adoption of the files DVC wrote: touch every output in DAG order and record the
# current params and code, so that nothing re-runs (one core: the jobs only touch files).
ADOPT_COMMAND = ["snakemake", "--touch", "--forceall", "--cores", "1", "--quiet"]


def is_dvc_repo(root: Path = Path(".")) -> bool:
    return (root / ".dvc").is_dir()


def why_not_recorded(params: Mapping, param_files: Sequence[str], whole_dag: bool) -> str | None:
    """Why a finished Snakemake run's outputs cannot be recorded as dvc.yaml's, or None if they can."""
    if [Path(f) for f in param_files] != [PARAMS_FILE]:
        return (f"this run used presets ({', '.join(f for f in param_files if Path(f) != PARAMS_FILE)}), and DVC "
                f"records params.yaml's values. To version such a run, write the merged parameters first: "
                f"mbmt config {' '.join(f'-p {f}' for f in param_files)} --output params.yaml, "
                f"then `{GENERATE_COMMAND}` and snakemake without --configfile")
    if not whole_dag:
        return f"this run built only some targets; run snakemake for the whole DAG, or record them with {RECORD_COMMAND} STAGE..."
    if not DVC_YAML.is_file() or DVC_YAML.read_text() != render_dvc_yaml(params):
        return f"dvc.yaml is out of date with params.yaml: run `{GENERATE_COMMAND}`, then {RECORD_COMMAND}"
    from mbmt.environment import BASE_LOCK, STAGES_FILE, render_stages_file

    if BASE_LOCK.is_file() and (not STAGES_FILE.is_file() or STAGES_FILE.read_text() != render_stages_file(BASE_LOCK)):
        return f"{STAGES_FILE} is out of date with {BASE_LOCK}: run `{GENERATE_COMMAND}`, then {RECORD_COMMAND}"
    return None


def record_snakemake_run(params: Mapping, param_files: Sequence[str], whole_dag: bool) -> bool:
    """`dvc commit` the outputs of a finished Snakemake run, when they are what dvc.yaml describes.

    Prints what it did, or why it did not and the command that would; returns whether it recorded.
    """
    if not is_dvc_repo():
        return False
    reason = why_not_recorded(params, param_files, whole_dag)
    if reason is None:
        result = subprocess.run([*RECORD_COMMAND.split(), "--quiet"], capture_output=True, text=True)
        if result.returncode == 0:
            print("Recorded the outputs for DVC (dvc commit): `git add dvc.lock && git commit`, then `dvc push`",
                  file=sys.stderr)
            return True
        reason = f"{RECORD_COMMAND} failed: {result.stderr.strip() or result.stdout.strip()}"
    print(f"Not recorded for DVC: {reason}", file=sys.stderr)
    return False


def run(command: Sequence[str], what: str, hint: str = "") -> None:
    result = subprocess.run(list(command))
    if result.returncode != 0:
        raise MbmtError(f"{what} failed (`{' '.join(command)}` exited with {result.returncode}); see its messages "
                        f"above{'; ' + hint if hint else ''}")


# Why DVC may have no copy of an output to restore, and what to do: printed when the restore fails.
NOT_RECORDED_HINT = ("outputs that DVC has no hash or cached copy of belong to stages that never ran with this "
                     "params.yaml and code (e.g. in a commit whose run was partial): `dvc repro` runs just "
                     "those, then run this again")
NOT_PUSHED_HINT = "outputs missing from the remote were never pushed (`dvc push` where they were run)"


def adopt(dvc_command: Sequence[str]) -> None:
    """Restore DVC's recorded outputs with ``dvc_command`` (pull or checkout), then tell Snakemake
    they are current: only when DVC reports every stage up to date, so nothing stale is adopted."""
    if not is_dvc_repo():
        raise MbmtError("not a DVC repository (no .dvc/ here): run from the project root")
    hint = NOT_RECORDED_HINT if dvc_command[1] == "checkout" else f"{NOT_PUSHED_HINT}; {NOT_RECORDED_HINT}"
    run(dvc_command, "restoring the outputs", hint)
    status = subprocess.run(["dvc", "status", "--quiet"], capture_output=True, text=True)
    if status.returncode != 0:
        raise MbmtError("DVC reports stages out of date after the restore (`dvc status` lists them): run "
                        "`dvc repro`, or `snakemake --cores all`, to bring them up to date; nothing was adopted")
    run(ADOPT_COMMAND, "Snakemake's adoption of the restored outputs")

# The DVC front end on the same checkout. While this workflow runs, every output of the DAG is
# registered as being written in DVC's lock table, so `dvc repro` (or `dvc commit`, `dvc status`)
# refuses to start, naming this run; and this run refuses to start while DVC writes an output.
# After a successful run of the whole DAG without presets, its outputs are recorded for DVC
# (`dvc commit`), so that `dvc push` works right away. See src/mbmt/locking.py and src/mbmt/sync.py.

import contextlib
import sys

from mbmt import locking, sync

DVC_LOCK = contextlib.ExitStack()


def whole_dag_was_run():
    """The run's target was the default one (rule all), not a part of the DAG."""
    return all(job.rule.name == "all" for job in workflow.dag.targetjobs)


onstart:
    refuse_environment_drift()  # before anything else: nothing locked, nothing run
    refuse_unasked_cpu_training()
    check_slurm_submission()  # workflow/rules/slurm.smk: requests and status command that Slurm cannot serve
    if sync.is_dvc_repo():
        command = "snakemake " + " ".join(sys.argv[1:])
        try:
            DVC_LOCK.enter_context(
                locking.dvc_write_lock(Path("."), PLAN.outputs, command)
            )
        except locking.LockError as exc:
            raise WorkflowError(str(exc)) from None


onsuccess:
    DVC_LOCK.close()
    # --touch (mbmt pull's adoption) rewrites no output: there is nothing new to record.
    if not workflow.touch:
        sync.record_snakemake_run(config, PARAM_FILES, whole_dag_was_run())


onerror:
    DVC_LOCK.close()

# Runs through Slurm (profiles/slurm): before the first submission, the requests of the jobs to run
# are checked against the partitions (sinfo) and the plugin's status command against the cluster's
# accounting; what would fail, or hang without a word, stops the run with one message listing each
# problem and its fix (src/mbmt/slurm.py, docs/workflow.md "SLURM").

from mbmt import slurm


def check_slurm_submission():
    """Called by onstart (workflow/rules/dvc.smk) when the executor is slurm."""
    plugin = workflow.executor_plugin
    if plugin is None or getattr(plugin, "name", None) != "slurm":
        return
    settings = workflow.executor_settings
    requests = [
        slurm.Request(
            job.rule.name,
            partition=job.resources.get("slurm_partition"),
            threads=job.resources.get("cpus_per_task") or job.threads,
            memory_mb=job.resources.get("mem_mb_per_cpu", 0) * job.threads
            or job.resources.get("mem_mb"),
            gpus=int(job.resources.get("gpu") or 0),
            nodes=int(job.resources.get("nodes") or 1),
        )
        for job in workflow.dag.needrun_jobs()
        if not job.is_local
    ]
    found = slurm.problems(
        requests,
        getattr(settings, "status_command", None),
        getattr(settings, "init_seconds_before_status_checks", 40) or 40,
    )
    if found:
        raise WorkflowError(
            "this run cannot work on this Slurm cluster:\n  " + "\n  ".join(found)
        )

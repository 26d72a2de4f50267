"""Thin stage commands: parse arguments, load params, call the library, write outputs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mbmt.plan import Plan
    from mbmt.provenance import ProvenanceLabels


def job_plan(args: argparse.Namespace) -> Plan:
    """The plan of the params files ``args`` names (mbmt.plan.Plan), built once per command."""
    plan = getattr(args, "plan", None)
    if plan is None:
        from mbmt.config import load_params
        from mbmt.plan import Plan

        plan = args.plan = Plan(load_params(args.params))
    return plan


def job_params(args: argparse.Namespace) -> dict:
    """The params of the train or evaluate job ``args`` names (a study job's variant included: Plan.job_params),
    loaded once per command and kept on ``args`` for the CLI's lock, its GPU claim and the stage."""
    params = getattr(args, "job_params", None)
    if params is None:
        params = args.job_params = job_plan(args).job_params(args.model)
    return params


def provenance_labels(params: Mapping) -> ProvenanceLabels:
    """params ``profile`` and ``data.source`` (mbmt.provenance.PROVENANCE_PARAMS), which name a run in its
    provenance record, unpacked at the stage."""
    from mbmt.provenance import ProvenanceLabels

    return ProvenanceLabels(profile=params["profile"], dataset=params["data"]["source"])

"""Thin stage commands: parse arguments, load params, call the library, write outputs."""

from __future__ import annotations

import argparse


def job_params(args: argparse.Namespace) -> dict:
    """The params of the train or evaluate job ``args`` names (a study job's variant included: mbmt.dag.job_params),
    loaded once per command and kept on ``args`` for the CLI's lock, its GPU claim and the stage."""
    params = getattr(args, "job_params", None)
    if params is None:
        from mbmt.config import load_params
        from mbmt.dag import job_params as resolve

        params = args.job_params = resolve(load_params(args.params), args.model)
    return params

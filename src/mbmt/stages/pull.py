"""Get every recorded output from the DVC remote and make Snakemake see it as current.

Runs `dvc pull` (or, with --checkout, `dvc checkout`: from the local cache, e.g. after deleting
an output), checks that `dvc status` is clean, then `snakemake --touch --forceall`: DVC writes
files in any order and Snakemake decides from modification times, so without that last step
Snakemake would re-run jobs whose inputs happen to have been written after their outputs.
Afterwards `snakemake -n` has nothing to do, and a params change re-runs what it touches.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkout", action="store_true",
                        help="restore from the local DVC cache (dvc checkout) instead of the remote (dvc pull)")
    parser.add_argument("-r", "--remote", help="the DVC remote to pull from (default: the default remote)")


def main(args: argparse.Namespace) -> int:
    from mbmt.sync import adopt

    if args.checkout:
        command = ["dvc", "checkout"]
    else:
        command = ["dvc", "pull"] + (["--remote", args.remote] if args.remote else [])
    adopt(command)
    print("Every output is current for DVC and Snakemake (`dvc status` clean, `snakemake -n` has nothing to do)")
    return 0

"""Write dvc.yaml from params.yaml and the plan and stage definitions the Snakefile uses
(src/mbmt/plan.py, src/mbmt/stage_specs.py).

dvc.yaml is generated, so the two front ends cannot drift apart: run this after changing `models`,
an `init_from`, `seeds` or `studies` in params.yaml, and commit the result. --check (for CI and the tests) writes
nothing and fails if the committed dvc.yaml is not what this command would write. It writes (and
checks) requirements/stages.yaml too: each stage's result-affecting locked versions, from
requirements/base.txt, that dvc.yaml's stages depend on (mbmt.environment); run it after regenerating
the lock (requirements/lock.sh does). The file is rewritten only when its content changes.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if dvc.yaml differs from what would be written")
    parser.add_argument("--output", metavar="FILE", help="where to write (default: dvc.yaml)")


def main(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from mbmt.config import load_params
    from mbmt.dvc_yaml import DVC_YAML, GENERATE_COMMAND, render_dvc_yaml
    from mbmt.environment import BASE_LOCK, STAGES_FILE, render_stages_file
    from mbmt.errors import MbmtError
    from mbmt.io import atomic_path
    from mbmt.paths import PARAMS_FILE

    text = render_dvc_yaml(load_params(args.params))
    if not BASE_LOCK.is_file():
        raise MbmtError(f"{BASE_LOCK}: the lock is missing; run from the project root (regenerate it with "
                        "`bash requirements/lock.sh`)")
    stages = render_stages_file(BASE_LOCK)
    target = Path(args.output or DVC_YAML)
    if args.params and [Path(p) for p in args.params] != [PARAMS_FILE]:
        # DVC reads the values of the params keys from params.yaml alone.
        print(f"mbmt dag: note: generated from {' + '.join(args.params)}; `dvc repro` reads params.yaml, "
              "so write the merged parameters there first (mbmt config ... --output params.yaml)", file=sys.stderr)
    if args.check:
        if not STAGES_FILE.is_file() or STAGES_FILE.read_text() != stages:
            raise MbmtError(f"{STAGES_FILE} is out of date with {BASE_LOCK}: run `{GENERATE_COMMAND}` and commit "
                            f"{STAGES_FILE}")
        if not target.is_file() or target.read_text() != text:
            raise MbmtError(f"{target} is out of date with params.yaml (models, an init_from, seeds or studies changed, or "
                            f"src/mbmt/stage_specs.py or plan.py): run `{GENERATE_COMMAND}` and commit {target}")
        print(f"{target} is up to date")
        return 0
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    if not STAGES_FILE.is_file() or STAGES_FILE.read_text() != stages:
        with atomic_path(STAGES_FILE) as tmp:
            tmp.write_text(stages)
        print(f"{STAGES_FILE}: the result-affecting packages of {BASE_LOCK}")
    print(f"{target}: {text.count(chr(10))} lines")
    return 0

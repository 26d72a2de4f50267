#!/usr/bin/env bash
# Regenerates the locks requirements/{base,dev,s3,ssh,slurm}.txt from pyproject.toml, one per install set
# (the dependencies, then each extra with them), and the result-affecting part of the lock that the
# stages depend on (requirements/stages.yaml, through `mbmt dag`). Run from the project root, in the
# environment installed from requirements/dev.txt (it pins uv): `bash requirements/lock.sh`.
# Each lock is universal (one file for every platform and Python >= 3.11, markers where they differ)
# and hash-checked; an existing lock's pins are kept unless pyproject.toml needs others
# (add --upgrade-package NAME to move one deliberately). See docs/environment.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for set in dev base s3 ssh slurm; do
    extra=() constraints=()
    [ "$set" = base ] || extra=(--extra "$set")
    # One resolution: every other set is dev's (a superset of each) cut down, so the locks agree.
    [ "$set" = dev ] || constraints=(--constraint requirements/dev.txt)
    uv pip compile pyproject.toml "${extra[@]}" --universal --python-version 3.11 --generate-hashes \
        --quiet --custom-compile-command "bash requirements/lock.sh" -o "requirements/$set.txt" "${constraints[@]}" "$@"
done
mbmt dag

"""Print the merged, validated parameters (params.yaml and any presets given with --params);
every backbone name is checked against timm's models too.

Use it to see what a preset changes before running it, e.g.
    mbmt config -p params.yaml -p config/demo.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="FILE", help="also write the merged parameters to FILE (YAML)")


def main(args: argparse.Namespace) -> int:
    import yaml

    from mbmt.config import load_params, validate_backbones
    from mbmt.io import atomic_path

    params = load_params(args.params)
    validate_backbones(params, source=" + ".join(args.params or ["params.yaml"]))
    text = yaml.safe_dump(params, sort_keys=False)
    print(text, end="")
    if args.output:
        with atomic_path(args.output) as tmp:
            tmp.write_text(text)
    return 0

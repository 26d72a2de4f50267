"""Print the trainable and total parameters of every model beside the paper's counts.

Builds each model of params `models` without loading any weights, so it needs neither trained
models nor ImageNet weights. The paper column comes from the MBMT-Net slides; "–" where the
paper gives no count. Below the table, how many seeds (params seeds) every model trains with,
which is how many runs each result of the report averages. --json writes
{"<model>": {"trainable": N, "total": N}}.
"""

from __future__ import annotations

import argparse

MISSING = "–"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the counts as JSON to PATH")


def parameter_counts(params: dict) -> dict[str, dict[str, int]]:
    """{model: {"trainable", "total"}} for every model of ``params`` (built without weights)."""
    from mbmt.config import model_settings
    from mbmt.models import count_parameters, create_model

    return {name: count_parameters(create_model(model_settings(params, name), load_init=False))
            for name in params["models"]}


def format_table(counts: dict[str, dict[str, int]], paper: dict[str, dict[str, int]]) -> str:
    """A plain-text table: ours, the paper's and the relative difference, for trainable and total."""
    header = ["model", "trainable", "paper", "diff", "total", "paper", "diff"]
    rows = []
    for name, ours in counts.items():
        row = [name]
        for key in ("trainable", "total"):
            theirs = paper.get(name, {}).get(key)
            row += [f"{ours[key]:,}", MISSING if theirs is None else f"{theirs:,}",
                    MISSING if theirs is None else f"{100 * (ours[key] - theirs) / theirs:+.2f} %"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def seeds_line(seeds: list[int]) -> str:
    runs = "once" if len(seeds) == 1 else f"{len(seeds)} times"
    each = "is that run's" if len(seeds) == 1 else f"averages {len(seeds)} runs"
    return (f"seeds {seeds}: every model trains {runs}; each result of the report {each}"
            " (parameter counts do not depend on the seed)")


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.io import write_json
    from mbmt.paper import PARAMETERS

    params = load_params(args.params)
    counts = parameter_counts(params)
    print(f"parameters of profile {params['profile']!r} beside the paper's (MBMT-Net slides)")
    print(format_table(counts, PARAMETERS))
    print(seeds_line(params["seeds"]))
    if args.json:
        write_json(args.json, counts)
    return 0

"""Settings, not the params dict: below the stages, no function takes the whole params (docs/code.md).

A stage unpacks its own section of params at its boundary and hands the library typed, immutable
settings and named values (DVC's example-get-started does the same), so what a library function
reads is in its signature and a stage's declared params can be checked against what it reads
(tests/test_stage_reads.py). Only the params' validation and their unpacking into settings
(mbmt.config) and the plan's construction (mbmt.plan) take the whole dict. The walk reads every function's parameters with ``ast``: a
parameter named ``params`` is the whole dict by the package's convention.
"""

from __future__ import annotations

import ast

import pytest

from test_layers import LAYERS, MODULES, layer_of

STAGES = next(index for index, (name, _) in enumerate(LAYERS) if name == "stages and front ends")
# Module -> why it may take the whole params dict.
ALLOWED = {
    "mbmt.config": "loads, merges and validates params, and unpacks them into settings for the stages",
    "mbmt.plan": "builds the plan (jobs, their params and identities) from validated params",
}
WHOLE = "params"


def takers(module: str, source: str | None = None) -> list[str]:
    """The functions of ``module`` (or ``source`` read as it) with a parameter named ``params``."""
    tree = ast.parse(MODULES[module].read_text() if source is None else source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            if WHOLE in names:
                found.append(f"{module}:{getattr(node, 'name', '<lambda>')} (line {node.lineno})")
    return found


def test_no_library_function_below_the_stages_takes_the_whole_params():
    offenders = [name for module in MODULES if layer_of(module) < STAGES and module not in ALLOWED
                 for name in takers(module)]
    assert not offenders, ("these take the whole params dict; unpack the section at the stage and pass "
                           "settings or named values:\n" + "\n".join(offenders))


def test_the_allowed_modules_exist():
    assert set(ALLOWED) <= set(MODULES), set(ALLOWED) - set(MODULES)


@pytest.mark.parametrize(("source", "expected"), [
    ("def f(params, name):\n    return params[name]\n", ["mbmt.data.augment:f (line 1)"]),
    ("class A:\n    def g(self, *, params=None):\n        pass\n", ["mbmt.data.augment:g (line 2)"]),
    ("def f(train, evaluate):\n    pass\n", []),
])
def test_the_walk_sees_every_taker(source, expected):
    assert takers("mbmt.data.augment", source) == expected

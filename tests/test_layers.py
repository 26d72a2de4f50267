"""The package's layers: no module imports one from a layer above its own (docs/code.md).

Every ``import mbmt...`` and ``from mbmt... import`` statement is read with ``ast`` — at module
level, inside functions (the lazy imports of torch-heavy code) and under TYPE_CHECKING alike — so
the test needs no heavy import and sees the imports a run may take as well as those it takes at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "mbmt"

# Bottom to top. A module belongs to the layer of the longest entry naming it or a package above it
# ("mbmt" alone names only the package's __init__). A module may import its own layer and those below.
LAYERS = (
    # What every layer may use: the tasks and classes, where files go, the params, errors, file
    # writing, files from the Hugging Face Hub, device placement (and a node's GPU claims), the
    # published numbers, colour maps, the stage definitions.
    ("foundation", ("mbmt", "mbmt.tasks", "mbmt.paths", "mbmt.config", "mbmt.errors", "mbmt.io", "mbmt.device",
                    "mbmt.gpus", "mbmt.hub", "mbmt.locking", "mbmt.provenance", "mbmt.environment", "mbmt.paper", "mbmt.anchors", "mbmt.visual", "mbmt.stage_specs", "mbmt.plan")),
    ("data", ("mbmt.data",)),
    ("models", ("mbmt.models",)),
    ("training and evaluation", ("mbmt.losses", "mbmt.metrics", "mbmt.training", "mbmt.evaluation")),
    ("prediction and reporting", ("mbmt.predict", "mbmt.reporting")),
    # mbmt.slurm: the checks a Snakemake run makes before its first submission to a Slurm cluster.
    ("stages and front ends", ("mbmt.stages", "mbmt.cli", "mbmt.__main__", "mbmt.sync", "mbmt.dvc_yaml", "mbmt.slurm")),
)
# (importer, imported) -> why that import may run up a layer. None remain; a new one needs its reason.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer_of(module: str) -> int:
    matches = [(len(entry), index) for index, (_, entries) in enumerate(LAYERS) for entry in entries
               if module == entry or (entry != "mbmt" and module.startswith(entry + "."))]
    if not matches:
        raise KeyError(module)
    return max(matches)[1]


def imports(module: str, source: str | None = None) -> set[str]:
    """The mbmt modules ``module`` (or ``source`` read as that module) imports; ``from mbmt.x import y``
    counts as mbmt.x.y where y is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name == "mbmt" or name.startswith("mbmt.")}


def upward_imports() -> dict[tuple[str, str], str]:
    found = {}
    for module in MODULES:
        for target in imports(module):
            if layer_of(target) > layer_of(module):
                found[(module, target)] = (f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                                           f"({LAYERS[layer_of(target)][0]})")
    return found


def test_every_module_has_a_layer():
    unplaced = [module for module in MODULES if not _placed(module)]
    assert not unplaced, f"add these modules to LAYERS: {unplaced}"


def _placed(module: str) -> bool:
    try:
        layer_of(module)
    except KeyError:
        return False
    return True


def test_no_import_runs_up_a_layer():
    upward = upward_imports()
    unexplained = [text for pair, text in upward.items() if pair not in EXCEPTIONS]
    assert not unexplained, "imports that run up a layer:\n" + "\n".join(unexplained)
    stale = [pair for pair in EXCEPTIONS if pair not in upward]
    assert not stale, f"exceptions no longer needed (remove them): {stale}"


@pytest.mark.parametrize(("source", "expected"), [
    ("from mbmt.predict import colorize_depth\n", {"mbmt.predict"}),
    ("def f():\n    from mbmt.data import synthetic\n", {"mbmt.data.synthetic"}),
    ("import mbmt.models.base\nfrom mbmt import paths\n", {"mbmt.models.base", "mbmt.paths"}),
])
def test_the_walk_sees_module_and_function_level_imports(source, expected):
    assert imports("mbmt.data.augment", source) == expected
    if "mbmt.predict" in expected:
        assert layer_of("mbmt.predict") > layer_of("mbmt.data.augment")  # would be reported

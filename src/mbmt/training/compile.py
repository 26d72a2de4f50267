"""The training step under torch.compile (params train.compile): the compiled model, one error for
a compile failure, and the record of what torch.compile did, for the training summary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from mbmt.errors import MbmtError


class CompileError(MbmtError):
    """torch.compile failed on the training step (train.compile): no silent eager fallback."""


def compiled(model: torch.nn.Module, mode: str):
    """``model`` under torch.compile (params train.compile), or itself for ``none``.

    A compile failure (an unsupported operation, no compiler toolchain) is an error
    (compile_errors), never a silent eager run: a run that says it is compiled is. What
    was compiled, broken into pieces or captured in CUDA graphs is recorded (CompileRecord).
    """
    if mode == "none":
        return model
    import torch._dynamo

    torch._dynamo.config.suppress_errors = False  # an environment's TORCHDYNAMO_SUPPRESS_ERRORS included
    # One input shape per run, except a smaller last batch: no dynamic-shape kernels.
    return torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)


@contextlib.contextmanager
def compile_errors(mode: str, model: str) -> Iterator[None]:
    """A failure of torch.compile (train.compile ``mode``) while training model ``model`` as one
    CompileError naming the setting and the fix."""
    if mode == "none":
        yield
        return
    import torch._dynamo.exc

    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CompileError(f"model {model}: torch.compile failed on the training step under train.compile: "
                           f"{mode} ({type(exc).__name__}: {reason.strip()}); set train.compile: none "
                           f"to train eagerly (the same results up to rounding, slower)") from exc


class CompileRecord:
    """What torch.compile did for this process's training, for the training summary ("compile").

    From torch's own process-wide counters (torch._dynamo.utils.counters), taken when the trainer is
    built and again for the summary: ``graphs`` compiled (dynamo's stats/unique_graphs), ``graph_breaks``
    (the forward ran in compiled pieces with eager code between them), and, under reduce-overhead on
    CUDA, whether CUDA graphs were recorded (cudagraph trees' manager of the device has a recorded
    graph) and how many compiled graphs inductor left out of them (inductor/cudagraph_skips).
    ``compiled``: at least one graph ran compiled. A resumed run records its last process only.
    """

    def __init__(self, mode: str, device: torch.device):
        self.mode, self.device = mode, device
        self.start = self.counters() if mode != "none" else {}

    @staticmethod
    def counters() -> dict[str, int]:
        from torch._dynamo.utils import counters

        return {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
                "cuda_graph_skips": counters["inductor"]["cudagraph_skips"]}

    def cuda_graphs_recorded(self) -> bool | None:
        """Whether cudagraph trees recorded a graph on this device; None if this torch does not say."""
        if self.mode != "reduce-overhead" or self.device.type != "cuda":
            return False
        from torch._inductor import cudagraph_trees

        manager = cudagraph_trees.get_manager(self.device.index or 0, create_if_none_exists=False)
        roots = getattr(manager, "roots", None) if manager is not None else {}
        return None if roots is None else any(roots.values())

    def summary(self) -> dict[str, Any]:
        if self.mode == "none":
            return {"mode": "none", "compiled": False, "cuda_graphs": False}
        now = self.counters()
        delta = {key: value - self.start[key] for key, value in now.items()}
        return {"mode": self.mode, "compiled": delta["graphs"] > 0, "cuda_graphs": self.cuda_graphs_recorded(), **delta}

"""The compute device of a process, and every crossing of a tensor between it and the host.

On CUDA a tensor lives in the GPU's memory: numpy cannot read it (``.numpy()``, ``np.asarray``
raise TypeError), and an operation mixing it with a host tensor of more than one element raises
"Expected all tensors to be on the same device". On the CPU both work, so code that forgets a
crossing passes every CPU test and fails only on a GPU. The crossings are therefore made here,
by name:

- `to_device`: a loader batch onto the device, except its host metadata (HOST_KEYS: the
  samples' indices in the split, which only the host reads);
- `to_numpy`: a tensor (or array-like) as a numpy array on the host, wherever it lives;
- `non_finite_tensors`: one device-side reduction per tensor, one read-back for all of them.

tests/offhost.py simulates a CUDA device on the CPU to check that no other crossing exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mbmt.errors import MbmtError, ParamsError

# Batch entries that stay on the host: read by the host only (per-image rows, image counts), so
# copying them to the device would cost a transfer and a read-back for nothing.
HOST_KEYS = frozenset({"index"})


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """params train.device (auto | cpu | cuda) -> the torch device of this process."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError("train.device is 'cuda' but no CUDA device is visible; set train.device: auto or cpu")
        if local_rank >= torch.cuda.device_count():
            raise MbmtError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                            f"start torchrun with --nproc-per-node at most the number of GPUs")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """A loader batch's tensors on ``device``, copied without blocking (loaders pin memory on CUDA);
    HOST_KEYS stay where they are (on the host: loaders and DeviceSplit give them there)."""
    moved = {key: value.to(device, non_blocking=True) if torch.is_tensor(value) and key not in HOST_KEYS else value
             for key, value in batch.items()}
    if channels_last:
        moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved


def to_numpy(value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a numpy array on the host: a tensor is read back from its device first (a
    synchronisation on CUDA); anything else goes through np.asarray."""
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of a state dict that hold a NaN or an infinity.

    One reduction per tensor on its device, then a single host synchronisation for all of them.
    """
    named = [(key, value) for key, value in state.items() if value.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(value).all() for _, value in named]).tolist()
    return [key for (key, _), ok in zip(named, finite) if not ok]

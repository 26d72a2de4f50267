"""A CUDA device simulated on the CPU: the host/device boundary made visible to CPU tests.

On a GPU, numpy cannot read a device tensor and most operations refuse to mix a device tensor
with a host one; on the CPU both work, so a forgotten crossing passes every CPU test. Inside
``simulated_cuda()``:

- ``torch.device("cuda", 0)`` is where factory functions (``device=`` "cuda"), ``.to("cuda")``,
  ``.cuda()`` and ``Module.to("cuda")`` put tensors: an `OffHostTensor`, real CPU data (the same
  CPU kernels compute on it, so results equal a CPU run's) that reports ``device`` cuda:0;
- an OffHostTensor raises as CUDA does on ``.numpy()`` and ``np.asarray`` (TypeError "can't convert
  cuda:0 device type tensor to numpy"), and in an operation with a host tensor of one dimension
  or more (RuntimeError "Expected all tensors to be on the same device"; CUDA accepts 0-dim host
  tensors there, and so does this); in foreach/fused kernels (Adam's) every tensor of a list must
  be on the device, ``step`` included. ``.cpu()`` / ``.to("cpu")`` give a plain host copy;
  ``.item()``, ``.tolist()``, ``float()``, ``bool()`` read back, as on CUDA;
- torch.cuda's queries and no-ops the code calls (is_available, device_count, synchronize, memory
  statistics, get_device_name, ...) answer as one GPU would, so the CUDA code paths run (fused Adam,
  sync_every auto = 50, the validation batch of 16, pin_memory asked for).

Limits: nothing runs on a GPU. Kernels are the CPU's (no cuDNN, no bf16 autocast on these tensors,
no asynchrony, no CUDA graphs or torch.compile); Adam takes the single-tensor path where CUDA takes
foreach; the DataLoader's pinned batches are ordinary host copies; tensors made by C++ without a device
argument (autograd's gradients) are host tensors unless read through ``.grad``, which gives them
the parameter's device; torch.distributed is not simulated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import torch
from torch._C import DisableTorchFunctionSubclass
from torch.overrides import TorchFunctionMode

DEVICE = torch.device("cuda", 0)
NUMPY_ERROR = ("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host "
               "memory first.")
MIXED_ERROR = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
# Operations CUDA runs with a device tensor and a host one: copies, and indexing with host indices.
CROSSING = {torch.Tensor.copy_, torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.to,
            torch.Tensor.cpu, torch.Tensor.cuda}


def host(tensor: torch.Tensor) -> torch.Tensor:
    """The plain CPU tensor under ``tensor`` (sharing its memory)."""
    with DisableTorchFunctionSubclass():
        return torch.Tensor.as_subclass(tensor, torch.Tensor)


def offhost(tensor: torch.Tensor) -> OffHostTensor:
    with DisableTorchFunctionSubclass():
        return torch.Tensor.as_subclass(tensor, OffHostTensor)


def _tensors(values) -> Iterator[tuple[torch.Tensor, bool]]:
    """(tensor, in a list) of ``values``, one level into lists and tuples."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value, False
        elif isinstance(value, (list, tuple)):
            yield from ((v, True) for v in value if isinstance(v, torch.Tensor))


def check_same_device(func, args, kwargs) -> None:
    """Raise as CUDA does when ``func`` mixes device tensors with host ones."""
    name = getattr(func, "__name__", "")
    if func in CROSSING or name in ("__get__", "__set__", "_has_compatible_shallow_copy_type"):
        return
    strict = name.startswith(("_foreach_", "_fused_"))  # device pointers for every tensor of a list
    found = list(_tensors([*args, *kwargs.values()]))
    if not any(isinstance(t, OffHostTensor) for t, _ in found):
        return
    for tensor, listed in found:
        if not isinstance(tensor, OffHostTensor) and (tensor.dim() > 0 or (strict and listed)):
            raise RuntimeError(f"{MIXED_ERROR} (in {name or func}, simulated by tests/offhost.py)")


class OffHostTensor(torch.Tensor):
    """CPU data that behaves, at the host boundary, as a tensor in a CUDA device's memory."""

    @property
    def device(self) -> torch.device:
        return DEVICE

    @property
    def is_cuda(self) -> bool:
        return True

    @property
    def is_cpu(self) -> bool:
        return False

    def get_device(self) -> int:
        return 0

    def __reduce_ex__(self, protocol):
        # torch.save'd as a host tensor: what torch.load(map_location="cpu") gives for a CUDA one.
        return host(self).clone().__reduce_ex__(protocol)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise TypeError(NUMPY_ERROR)
        check_same_device(func, args, kwargs)
        with DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        if func == torch.Tensor.grad.__get__ and isinstance(result, torch.Tensor):
            return offhost(result)  # autograd's gradient of a device parameter is on the device
        if func in torch.overrides.get_default_nowrap_functions():
            return result
        return torch._tensor._convert(result, cls)


def _target(device) -> torch.device | None:
    if device is None:
        return None
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


class SimulatedCuda(TorchFunctionMode):
    """Places tensors asked for on "cuda" in OffHostTensors, and copies them back to the host."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            return self.move(func, args[0], args[1:], kwargs)
        if func is torch.Tensor.pin_memory:  # the DataLoader's: host memory, page-locked on a GPU machine
            return host(args[0]).clone()
        device = _target(kwargs.get("device"))
        if device is not None and device.type == "cuda":  # a factory function (or new_*) on the device
            kwargs["device"] = "cpu"
            result = func(*args, **kwargs)
            return offhost(host(result)) if isinstance(result, torch.Tensor) else result
        return func(*args, **kwargs)

    @staticmethod
    def move(func, tensor: torch.Tensor, args, kwargs):
        if func is torch.Tensor.cpu:
            device, dtype, memory_format, copy = torch.device("cpu"), None, torch.preserve_format, False
        elif func is torch.Tensor.cuda:
            device, dtype, memory_format, copy = DEVICE, None, torch.preserve_format, False
        else:
            copy = kwargs.pop("copy", False) or (len(args) > 3 and args[3])
            device, dtype, _, memory_format = torch._C._nn._parse_to(*args[:3], **kwargs)
        on_device = isinstance(tensor, OffHostTensor)
        if device is None:
            device = DEVICE if on_device else torch.device("cpu")
        crossing = on_device != (device.type == "cuda")
        with DisableTorchFunctionSubclass():
            moved = torch.Tensor.to(host(tensor), dtype=dtype or tensor.dtype,
                                    memory_format=memory_format or torch.preserve_format, copy=copy or crossing)
        return offhost(moved) if device.type == "cuda" else host(moved)


@contextlib.contextmanager
def simulated_cuda() -> Iterator[torch.device]:
    """Within: "cuda" is a simulated device (see the module docstring); yields its torch.device."""
    import torch._dynamo  # noqa: F401  (imported now, it maps torch.cuda's real functions, not these)

    def answer(value):  # a function object per patch: torch._dynamo refuses one object under two names
        return lambda *args, **kwargs: value

    patches = {"is_available": True, "device_count": 1, "current_device": 0, "is_bf16_supported": True,
               "get_device_name": "simulated CUDA (tests/offhost.py)", "synchronize": None, "empty_cache": None,
               "set_device": None, "reset_peak_memory_stats": None, "max_memory_allocated": 0,
               "max_memory_reserved": 0, "memory_allocated": 0, "memory_reserved": 0}
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    with contextlib.ExitStack() as stack:
        for name, value in patches.items():
            stack.enter_context(mock.patch.object(torch.cuda, name, answer(value)))
        # The optimisers group their tensors by the device C++ sees (the CPU): group them by the one
        # they report, so that what the optimiser moves "to the group's device" (found_inf) goes there.
        group = torch.optim.Optimizer._group_tensors_by_device_and_dtype

        def by_reported_device(tensorlistlist, with_indices=False):
            groups = group(tensorlistlist, with_indices)
            return {(next(t for t in lists[0] if t is not None).device, dtype): (lists, indices)
                    for (_, dtype), (lists, indices) in groups.items()}

        stack.enter_context(mock.patch.object(torch.optim.Optimizer, "_group_tensors_by_device_and_dtype",
                                              staticmethod(by_reported_device)))
        # Asks the (real) accelerator whether a CUDA graph is being captured: none is, here.
        stack.enter_context(mock.patch.object(torch.optim.Optimizer, "_accelerator_graph_capture_health_check",
                                              answer(None)))
        # Module.to("cuda") then replaces each parameter by a new one of the OffHostTensor class,
        # instead of assigning the moved data into the plain host parameter (which keeps its class).
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        stack.callback(torch.__future__.set_overwrite_module_params_on_conversion, overwrite)
        stack.enter_context(SimulatedCuda())
        yield DEVICE

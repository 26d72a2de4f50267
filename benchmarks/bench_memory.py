"""Peak memory of each model's training at a configuration's size: what a job holds on its device.

For each model, in a fresh process: build it (random weights), take ``--steps`` training steps
(forward under the configuration's autocast and memory format, the summed task losses, backward,
Adam, which allocates its state at the first step) on a random batch, and report the peak:

- on CUDA, torch.cuda.max_memory_allocated and max_memory_reserved (what the caching allocator
  holds; add the CUDA context, ~0.5 GB per process, for what nvidia-smi shows);
- on CPU, the process's peak resident memory (VmHWM) less its resident memory before the model
  was built. This is an *estimate* of the GPU's need at best: fp32 (no bf16 autocast), CPU
  kernels' own workspaces, no cuDNN workspace or allocator rounding.

    python benchmarks/bench_memory.py [--configs paper] [--models st_ss ...] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import CONFIGS, MODELS, bare_step, benchmark_params  # noqa: E402

GIB = 2**30


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def random_batch(height: int, width: int, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(batch_size, 3, height, width, generator=generator), dim=1)
    batch = {"image": torch.rand(batch_size, 3, height, width, generator=generator),
             "semantic": torch.randint(-1, 13, (batch_size, height, width), generator=generator),
             "depth": torch.rand(batch_size, 1, height, width, generator=generator) * 10,
             "normal": normal}
    return {name: value.to(device) for name, value in batch.items()}


def measure_one(config: str, name: str, device_name: str, steps: int) -> dict:
    from mbmt.config import model_settings
    from mbmt.models import create_model

    params = benchmark_params(config, steps, None, device_name)
    train, data = params["train"], params["data"]
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    amp = bool(train["amp"] and cuda)
    memory_format = torch.channels_last if train["channels_last"] else torch.preserve_format
    before_kib = proc_status_kib("VmRSS")
    model = create_model(model_settings(params, name), load_init=False).to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=train["lr"])
    batch = random_batch(data["height"], data["width"], train["batch_size"], device)
    if train["channels_last"]:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    model.train()
    for _ in range(steps):
        bare_step(model, optimizer, batch, device_type=device.type, amp=amp)
    if cuda:
        torch.cuda.synchronize()
        return {"allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                "reserved_gib": torch.cuda.max_memory_reserved() / GIB}
    return {"peak_rss_gib": (proc_status_kib("VmHWM") - before_kib) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["paper"])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=2,
                        help="training steps (default 2: Adam's state exists after the first)")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "MODEL"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one, args.device, args.steps)))
        return

    cuda = args.device == "cuda"
    print(f"device: {args.device}, {args.steps} training steps per model, torch {torch.__version__}"
          + ("" if cuda else "; CPU fp32 peak resident memory: an estimate of a GPU's need, not a measure") + "\n")
    columns = "peak allocated GiB | peak reserved GiB" if cuda else "peak resident GiB (CPU estimate)"
    print(f"| config | model | size | batch | {columns} |")
    print("| --- | --- | --- | --- | " + ("--- | --- |" if cuda else "--- |"))
    for config in args.configs:
        params = benchmark_params(config, args.steps, None, args.device)
        size = f"{params['data']['height']}x{params['data']['width']}"
        for name in args.models:
            # A fresh process per model: peaks do not carry over, and the allocator starts empty.
            child = subprocess.run([sys.executable, __file__, "--device", args.device, "--steps", str(args.steps),
                                    "--one", config, name], capture_output=True, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            values = " | ".join(f"{value:.2f}" for value in result.values())
            print(f"| {config} | {name} | {size} | {params['train']['batch_size']} | {values} |", flush=True)


if __name__ == "__main__":
    main()

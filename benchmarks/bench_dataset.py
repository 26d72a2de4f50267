"""Loading speed: NYUv2Dataset (one HDF5 file per split) vs MTAN's one-.npy-per-file layout.

Writes the same random-but-valid samples in both layouts to a temporary folder, then iterates a
DataLoader over each with identical settings (shuffle, batch size, MTAN's augmentation seeded
the same way) and prints samples/s side by side with their ratio, for each worker count.
Both layouts are read from the page cache (they were just written): this measures decoding and
augmentation, not the disk.

    python benchmarks/bench_dataset.py [--count 300] [--workers 0 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mbmt.data.augment import training_augmentation
from mbmt.data.dataset import NYUv2Dataset
from mbmt.data.hdf5 import SplitWriter
from mbmt.data.mtan_layout import sample_files, write_sample


def random_sample(rng: np.random.Generator, height: int, width: int) -> dict[str, np.ndarray]:
    """A valid sample: unlabelled pixels and holes (depth 0, all-zero normal) on 10 % of pixels."""
    normal = rng.standard_normal((height, width, 3), dtype=np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    depth = rng.uniform(0.5, 10.0, (height, width)).astype(np.float32)
    hole = rng.random((height, width)) < 0.1
    depth[hole], normal[hole] = 0, 0
    return {"image": rng.random((height, width, 3), dtype=np.float32),
            "semantic": rng.integers(-1, 13, (height, width)), "depth": depth, "normal": normal}


class MtanNpyDataset(Dataset):
    """A minimal reader of MTAN's layout as MTAN's own (np.load of four files, channel-first
    views), with the same augmentation and seeding as NYUv2Dataset."""

    def __init__(self, split_dir: Path, count: int, *, seed: int = 0):
        self.split_dir, self.count, self.seed = split_dir, count, seed
        self.transform = training_augmentation()
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # as NYUv2Dataset

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        arrays = {name: np.load(path) for name, path in sample_files(self.split_dir, index).items()}
        sample = {
            "image": torch.from_numpy(np.moveaxis(arrays["image"], -1, 0)),
            "semantic": torch.from_numpy(arrays["semantic"]).long(),
            "depth": torch.from_numpy(np.moveaxis(arrays["depth"], -1, 0)),
            "normal": torch.from_numpy(np.moveaxis(arrays["normal"], -1, 0)),
        }
        sample = self.transform(sample, np.random.default_rng([self.seed, int(self._epoch), index]))
        sample["index"] = index
        return sample


def write_both(root: Path, count: int, height: int, width: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    h5_path, npy_dir = root / "train.h5", root / "train"
    modalities = dict.fromkeys(("image", "semantic", "depth", "normal"), "rendered")
    with SplitWriter(h5_path, count, height, width, split="train", source="benchmark", modalities=modalities) as writer:
        for i in range(count):
            sample = random_sample(rng, height, width)
            writer.add(sample, f"sample {i}")
            write_sample(npy_dir, i, sample)
    return h5_path, npy_dir


def samples_per_second(datasets: dict[str, Dataset], *, workers: int, batch_size: int, epochs: int) -> dict[str, float]:
    """Best epoch of each dataset after a warm-up epoch (worker start-up and first touch excluded).

    The datasets take turns epoch by epoch, so a change in the machine's load hits both alike.
    """
    loaders = {name: DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
               for name, dataset in datasets.items()}
    best = dict.fromkeys(datasets, 0.0)
    for epoch in range(epochs + 1):
        for name, loader in loaders.items():
            datasets[name].set_epoch(epoch)
            start = time.perf_counter()
            seen = sum(len(batch["index"]) for batch in loader)
            if epoch > 0:
                best[name] = max(best[name], seen / (time.perf_counter() - start))
    return best


def cpu_ms_per_sample(datasets: dict[str, Dataset], *, epochs: int) -> dict[str, float]:
    """CPU time per sample read in this process on one torch thread, best epoch after a warm-up.

    CPU time, unlike samples/s, hardly depends on what else the machine runs.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    best = dict.fromkeys(datasets, float("inf"))
    for epoch in range(epochs + 1):
        for name, dataset in datasets.items():
            dataset.set_epoch(epoch)
            start = time.process_time()
            for index in range(len(dataset)):
                dataset[index]
            if epoch > 0:
                best[name] = min(best[name], (time.process_time() - start) / len(dataset) * 1e3)
    torch.set_num_threads(threads)
    return best


def megabytes(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (after one warm-up)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_dataset.") as tmp:
        h5_path, npy_dir = write_both(Path(tmp), args.count, args.height, args.width)
        print(f"{args.count} samples {args.height}x{args.width}, batch {args.batch_size}, augmentation on, "
              f"best of {args.epochs} epochs; on disk: HDF5 {megabytes(h5_path):.0f} MB, "
              f".npy {megabytes(npy_dir):.0f} MB\n")
        print("| samples/s, num_workers | HDF5 (NYUv2Dataset) | MTAN .npy | HDF5 speed / .npy speed |")
        print("| ---: | ---: | ---: | ---: |")
        for workers in args.workers:
            datasets = {"hdf5": NYUv2Dataset(h5_path, augment=True), "npy": MtanNpyDataset(npy_dir, args.count)}
            speed = samples_per_second(datasets, workers=workers, batch_size=args.batch_size, epochs=args.epochs)
            print(f"| samples/s, {workers} | {speed['hdf5']:.0f} | {speed['npy']:.0f} | {speed['hdf5'] / speed['npy']:.2f} |")
        cost = cpu_ms_per_sample(datasets, epochs=args.epochs)
        print(f"| CPU ms per sample (1 thread) | {cost['hdf5']:.2f} | {cost['npy']:.2f} | {cost['npy'] / cost['hdf5']:.2f} |")
        # Other processes skew samples/s; the ratio of interleaved epochs and CPU time less so.
        print(f"\n{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

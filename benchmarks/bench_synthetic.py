"""Rendering speed of the synthetic scenes at the demo's and the paper's resolutions.

For each size, renders the same samples with one process and with N worker processes (the
output is identical), and prints ms per sample side by side with the speed-up, plus the time the
demo's (64 + 16 at 96x128) and the paper-size (795 + 654 at 288x384) datasets would take. The
split between drawing the scene (resolution-independent) and rendering it is shown too, and the
CPU time of the one-process run, which other jobs on a busy machine do not inflate.

    python benchmarks/bench_synthetic.py [--count 24] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import time

from mbmt.data import synthetic

SIZES = {"demo": ((96, 128), 64 + 16), "paper": ((288, 384), 795 + 654)}


def seconds_per_sample(count: int, height: int, width: int, workers: int) -> tuple[float, float]:
    """(wall-clock, this process's CPU) seconds per sample."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in synthetic.generate(count, height, width, 0, split="train", workers=workers):
        pass
    return (time.perf_counter() - start) / count, (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="samples per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    cpu = time.process_time()
    scenes = [synthetic.make_scene(0, "train", i) for i in range(args.count)]
    scene_ms = (time.process_time() - cpu) / args.count * 1000
    print(f"drawing a scene (any resolution): {scene_ms:.1f} ms CPU; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"| dataset | size | render only (ms CPU) | 1 process (ms CPU/sample) | 1 process (ms/sample) "
          f"| {args.workers} processes (ms/sample) | speed-up | samples | total with {args.workers} processes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, ((height, width), total) in SIZES.items():
        cpu = time.process_time()
        for scene in scenes:
            synthetic.render(scene, height, width)
        render_ms = (time.process_time() - cpu) / args.count * 1000
        serial, serial_cpu = seconds_per_sample(args.count, height, width, 1)
        parallel, _ = seconds_per_sample(args.count, height, width, args.workers)
        print(f"| {name} | {height}x{width} | {render_ms:.0f} | {serial_cpu * 1000:.0f} | {serial * 1000:.0f} "
              f"| {parallel * 1000:.0f} | {serial / parallel:.2f}x | {total} | {total * parallel:.0f} s |")


if __name__ == "__main__":
    main()

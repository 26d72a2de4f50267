"""Synthetic NYUv2-like indoor scenes whose depth, normals and labels come from the same ray hits.

A scene is a room — floor, ceiling and four walls, the planes of an axis-aligned box — furnished
with boxes standing on the floor (beds, tables and chairs, sofas, cabinets, shelves of books,
kitchen counters, bathtubs...), things on the walls (pictures, windows with curtains, doors, a TV,
wall cabinets) and small objects on the tops. A pinhole camera with the intrinsics of NYUv2's
Kinect RGB camera, scaled to the requested size, looks into the room from a handheld pose (1.0 to
1.7 m high, pitched down, slightly rolled). One ray per pixel is intersected with the room
and every box (numpy, vectorised over pixels) and the nearest hit gives every modality:

- ``depth``: z-depth in metres along the optical axis (NYUv2's and MTAN's convention, not the
  distance along the ray);
- ``normal``: the unit normal of the surface hit, in the camera frame, facing the camera;
- ``semantic``: the NYUv2 13-class id (mbmt.tasks.CLASS_NAMES) of the part hit, with NYUv2's
  mapping of its 40 classes (a door is wall, a rug floor, a pillow, lamp or mirror objects,
  curtains window, a desk table, a counter, shelf or fridge furniture);
- ``image``: Lambertian shading of the part's procedural texture (per-class materials, per-object
  colours) under a ceiling light with shadows (a shadow map), light from the windows and an
  ambient term; then auto exposure, gamma, a slight lens blur and sensor noise.

Conventions. World frame: x and y horizontal, z up, the floor is z = 0. Camera frame (OpenCV): x
to the right of the image, y down the image, z forward along the optical axis. Pixel (u, v)
(column, row; pixel centres at integer coordinates) with depth d is the camera-frame point
d * ((u - cx) / fx, (v - cy) / fy, 1), with (fx, fy, cx, cy) = ``intrinsics(height, width)``.
Normals are in the same camera frame and face the camera (n . p < 0 at the point p they belong
to): the floor seen by a level camera has the normal (0, -1, 0), a wall straight ahead (0, 0, -1).

Holes, like NYUv2's Kinect data: depth 0 and an all-zero normal, always at the same pixels, out of
the Kinect's range (0.5 to 10 m), on window panes, TV screens and mirrors that return no infrared
(some of them), in the projector's shadow on the left of depth edges (its width follows from the
Kinect's 7.5 cm baseline) and in a few random dropout blobs. Labels are -1 on some clutter objects
and in a few unannotated blobs.

Sample i depends on (seed, split, i) only. `make_scene` draws a scene, independent of the
resolution; `render` draws it at any size; `generate` chains the two. numpy only (no torch), so
the commands that render scenes start fast.

The modules, in the order a sample is made: `scene` (what a sample shows, NYUv2's camera, the
class ids), `layout` (drawing a scene: the room, its furniture placed, the camera, the light, the
holes), `furniture` (items built from boxes, the colour palettes), `textures` (the materials),
`render` (ray casting, lighting, the Kinect's holes, the image) and `plots` (a picture of samples
to look at). The names below are importable from here; `mtan` (samples written in MTAN's layout,
for `mbmt fetch` and `mbmt synth --format mtan`) is imported on its own, since it needs h5py.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from mbmt.data.synthetic.layout import make_scene
from mbmt.data.synthetic.plots import plot_samples
from mbmt.data.synthetic.render import _projector_shadow, render  # noqa: F401  (_projector_shadow: its test)
from mbmt.data.synthetic.scene import (
    DEPTH_RANGE_M,
    KINECT_BASELINE_M,
    MIN_SIZE,
    NORMAL_FRAME,
    NYU_INTRINSICS,
    NYU_SIZE,
    Blob,
    Decal,
    Finish,
    Part,
    Scene,
    intrinsics,
)

__all__ = [
    "DEPTH_RANGE_M", "KINECT_BASELINE_M", "MIN_SIZE", "NORMAL_FRAME", "NYU_INTRINSICS", "NYU_SIZE",
    "Blob", "Decal", "Finish", "Part", "Scene", "generate", "intrinsics", "make_scene", "plot_samples", "render",
]


def _sample(seed: int, split: str, index: int, height: int, width: int) -> dict[str, np.ndarray]:
    return render(make_scene(seed, split, index), height, width)


def generate(count: int, height: int, width: int, seed: int, *, split: str,
             workers: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``count`` canonical samples (mbmt.data.hdf5) of ``split`` at ``height`` x ``width``.

    Sample i is a function of (seed, split, i) only: the test split never repeats a training
    scene, and a larger ``count`` extends a smaller one. With ``workers`` > 1, samples are
    rendered in that many processes (forked where the platform can) and yielded in order, the
    same arrays as with one; at most 2 * ``workers`` samples wait in memory.
    """
    if count < 0 or min(height, width) < MIN_SIZE:
        raise ValueError(f"need count >= 0 and at least {MIN_SIZE} pixels a side, got count={count}, {height}x{width}")
    if workers <= 1:
        for index in range(count):
            yield _sample(seed, split, index, height, width)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # fork: workers need not re-import the caller's script (spawn would run an unguarded one again)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        pending = deque()
        for index in range(count):
            pending.append(pool.submit(_sample, seed, split, index, height, width))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

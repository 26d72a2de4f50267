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
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mbmt.tasks import CLASS_NAMES, IGNORE_LABEL

(BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW) = (
    CLASS_NAMES.index(name) for name in ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
                                         "picture", "sofa", "table", "tv", "wall", "window"))

NYU_SIZE = (480, 640)  # height, width of the Kinect RGB frames the intrinsics belong to
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)  # fx, fy, cx, cy (NYU toolbox, camera_params.m)
DEPTH_RANGE_M = (0.5, 10.0)  # what the Kinect measures; NYUv2's depth spans about 0.7 to 10 m
KINECT_BASELINE_M = 0.075  # projector to IR camera: sets the width of the projector's shadows

MIN_SIZE = 8  # pixels a side
# recorded in the files mbmt synth writes
NORMAL_FRAME = "camera frame (OpenCV): x right, y down, z forward along the optical axis; normals face the camera"

# Room faces, index 2 * axis + (1 for the far plane): walls x=0, x=lx, y=0, y=ly, then floor (4) and ceiling (5).
FLOOR_FACE = 4
ROOM_FACES = 6  # surface ids 0..5 are the room faces, 6 + k is part k


def intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of NYUv2's Kinect RGB camera resampled to ``height`` x ``width`` pixels.

    Pixel centres are at integer coordinates, so the principal point scales as (c + 0.5) * s - 0.5.
    """
    sy, sx = height / NYU_SIZE[0], width / NYU_SIZE[1]
    fx, fy, cx, cy = NYU_INTRINSICS
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


# --------------------------------------------------------------------------------------------
# Scene description


@dataclass(frozen=True)
class Part:
    """A box of half extents ``half`` along its own axes, centred at ``centre``, turned by ``yaw``
    (radians) about the vertical. Its own y axis is the one facing into the room: the front face
    of pictures, windows, screens, book rows and cabinet doors is a face normal to it."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    label: int  # class id, or IGNORE_LABEL for an unannotated object
    material: str  # a key of MATERIALS
    colour: tuple[float, float, float]  # sRGB albedo
    texture_seed: int
    no_return: bool = False  # its pane (glass, screen, mirror) returns no depth


@dataclass(frozen=True)
class Finish:
    """The look of a room face or a decal: a material of MATERIALS, its sRGB colour and texture seed."""

    material: str
    colour: tuple[float, float, float]
    texture_seed: int


@dataclass(frozen=True)
class Decal:
    """A rectangle of another finish on a room face (a rug, a door): appearance only, the face's
    plane and label stay. ``lo``/``hi`` bound the face's (u, v) world coordinates (see _face_uv)."""

    face: int
    lo: tuple[float, float]
    hi: tuple[float, float]
    finish: Finish


@dataclass(frozen=True)
class Blob:
    """An irregular ellipse in normalised image coordinates (x across the width, y down the height)."""

    centre: tuple[float, float]
    radii: tuple[float, float]
    angle: float
    seed: int


@dataclass(frozen=True, eq=False)
class Scene:
    kind: str  # room type, e.g. "bedroom"
    size: tuple[float, float, float]  # room extent along x and y, and its height (m)
    faces: tuple[Finish, ...]  # the six room faces by face index
    decals: tuple[Decal, ...]
    parts: tuple[Part, ...]
    camera_position: np.ndarray  # (3,) world metres
    camera_rotation: np.ndarray  # (3, 3) columns: the camera's x, y, z axes in world coordinates
    light: tuple[float, float, float]  # ceiling light position
    light_colour: tuple[float, float, float]
    fill: tuple[tuple[float, float, float], float] | None  # daylight from a window: direction, strength
    exposure: float  # sRGB value the 90th percentile of the image's brightness is exposed to
    depth_dropouts: tuple[Blob, ...]
    unlabelled: tuple[Blob, ...]
    noise_seed: int


# --------------------------------------------------------------------------------------------
# Ray casting


class _Geometry:
    """The scene's boxes as arrays, for casting rays."""

    def __init__(self, size: tuple[float, float, float], parts: tuple[Part, ...]):
        self.size = size
        self.centre = np.array([p.centre for p in parts], np.float64).reshape(-1, 3)
        self.half = np.array([p.half for p in parts], np.float64).reshape(-1, 3)
        self.yaw = np.array([p.yaw for p in parts], np.float64)
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        local = signs[None] * self.half[:, None]  # (M, 8, 3) corners in each box's frame
        cos, sin = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        self.corners = np.stack([cos * local[..., 0] - sin * local[..., 1] + self.centre[:, None, 0],
                                 sin * local[..., 0] + cos * local[..., 1] + self.centre[:, None, 1],
                                 local[..., 2] + self.centre[:, None, 2]], axis=-1)


@dataclass(frozen=True)
class _View:
    """A pinhole view: ``rotation`` columns are the camera's x (right), y (down), z (forward) axes."""

    position: np.ndarray
    rotation: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int

    def directions(self) -> np.ndarray:
        """(3, H, W) world directions of the pixel rays, scaled to a unit z in the camera frame, so
        that the ray parameter of a hit is its z-depth."""
        u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
        r = self.rotation.astype(np.float32)
        return (r[:, 0, None, None] * u[None, None, :] + r[:, 1, None, None] * v[None, :, None]
                + r[:, 2, None, None])

    def windows(self, corners: np.ndarray) -> list[tuple[slice, slice] | None]:
        """For each convex box of (M, 8, 3) world corners, the pixel rectangle it can cover (None if empty)."""
        cam = (corners - self.position) @ self.rotation
        ahead = cam[..., 2] > 1e-3
        z = np.where(ahead, cam[..., 2], 1.0)
        u, v = self.fx * cam[..., 0] / z + self.cx, self.fy * cam[..., 1] / z + self.cy
        c0 = np.clip(np.floor(u.min(1)), 0, self.width).astype(int)
        c1 = np.clip(np.ceil(u.max(1)) + 1, 0, self.width).astype(int)
        r0 = np.clip(np.floor(v.min(1)), 0, self.height).astype(int)
        r1 = np.clip(np.ceil(v.max(1)) + 1, 0, self.height).astype(int)
        whole = (slice(0, self.height), slice(0, self.width))
        # a box reaching behind the camera has no bound from its projection
        return [whole if not ahead[k].all() else (slice(r0[k], r1[k]), slice(c0[k], c1[k]))
                if c0[k] < c1[k] and r0[k] < r1[k] else None for k in range(len(corners))]


def _cast(view: _View, geometry: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of every pixel ray: (z-depth, surface id, face code, world directions).

    The face code of a hit is 2 * axis + (1 if the outward normal points along +axis), in the
    frame of the surface (the world for room faces, the box's own frame for parts).
    """
    directions = view.directions()
    o = view.position
    # Inside the room every ray leaves it through exactly one face: the nearest exit plane.
    t = np.full((view.height, view.width), np.inf, np.float32)
    surface = np.zeros(t.shape, np.int32)
    for axis in range(3):
        d = directions[axis]
        far_plane = d > 0
        with np.errstate(divide="ignore"):  # a ray parallel to the planes (d = 0) never meets them
            exit_t = np.where(far_plane, (geometry.size[axis] - o[axis]) / d, np.where(d < 0, -o[axis] / d, np.inf))
        nearer = exit_t < t
        t[nearer] = exit_t[nearer]
        surface[nearer] = (2 * axis + far_plane)[nearer]
    face = np.bitwise_xor(surface, 1).astype(np.int8)  # a room face's normal points inwards

    # Every box: a slab test on the pixels its projection can cover.
    for k, window in enumerate(view.windows(geometry.corners)):
        if window is None:
            continue
        dx, dy, dz = directions[0][window], directions[1][window], directions[2][window]
        cos, sin = math.cos(geometry.yaw[k]), math.sin(geometry.yaw[k])  # Python floats keep float32
        local_d = (cos * dx + sin * dy, -sin * dx + cos * dy, dz)
        rel = o - geometry.centre[k]
        local_o = (cos * rel[0] + sin * rel[1], -sin * rel[0] + cos * rel[1], rel[2])
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis in range(3):
                inverse = 1.0 / local_d[axis]
                h, start = float(geometry.half[k, axis]), float(local_o[axis])
                t1, t2 = (-h - start) * inverse, (h - start) * inverse
                near, far = np.minimum(t1, t2), np.maximum(t1, t2)
                if axis == 0:
                    t_in, t_out, axis_in = near, far, np.zeros(near.shape, np.int8)
                else:
                    later = near > t_in
                    t_in = np.where(later, near, t_in)
                    axis_in[later] = axis
                    t_out = np.minimum(t_out, far)
        t_window = t[window]
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < t_window)
        if not hit.any():
            continue
        entering_d = np.choose(axis_in, local_d)
        t_window[hit] = t_in[hit]
        surface[window][hit] = ROOM_FACES + k
        face[window][hit] = (2 * axis_in + (entering_d < 0))[hit]
    return t, surface, face, directions


def _rotate(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrix @ vectors`` for (3, N) float32 vectors, without BLAS (its threads only slow a 3x3 product)."""
    m = matrix.astype(np.float32)
    return m[:, 0, None] * vectors[0] + m[:, 1, None] * vectors[1] + m[:, 2, None] * vectors[2]


def _normals(surface: np.ndarray, face: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(3, N) world unit normals from surface ids and face codes (``yaw`` of each part)."""
    local = np.zeros((3, len(face)), np.float32)
    local[face // 2, np.arange(len(face))] = np.where(face % 2 == 1, 1.0, -1.0)
    part_yaw = np.concatenate([np.zeros(ROOM_FACES), yaw]).astype(np.float32)[surface]
    cos, sin = np.cos(part_yaw), np.sin(part_yaw)
    return np.stack([cos * local[0] - sin * local[1], sin * local[0] + cos * local[1], local[2]])


# --------------------------------------------------------------------------------------------
# Procedural textures: functions of surface coordinates in metres, so patterns are fixed in 3-D.
# No detail finer than about 5 cm: finer patterns alias into moire at NYUv2's resolution.


def _hash(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point: an integer hash, identical on every platform."""
    shape = np.broadcast_shapes(np.shape(i), np.shape(j))
    # uint32 arrays (never scalars, which warn) wrap around on overflow, as a hash wants
    i, j = np.broadcast_arrays(np.array(i, np.int64, ndmin=1), np.array(j, np.int64, ndmin=1))
    h = i.astype(np.uint32) * np.uint32(73856093)
    h ^= j.astype(np.uint32) * np.uint32(19349663)
    h ^= np.uint32((seed * 83492791) & 0xFFFFFFFF)
    for _ in range(2):
        h ^= h >> 16
        h *= np.uint32(0x45D9F3B)
    h ^= h >> 16
    return ((h >> 8).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


def _noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) on a unit lattice."""
    i, j = np.floor(u), np.floor(v)
    fu, fv = u - i, v - j
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    i, j = i.astype(np.int64), j.astype(np.int64)
    a, b = _hash(i, j, seed), _hash(i + 1, j, seed)
    c, d = _hash(i, j + 1, seed), _hash(i + 1, j + 1, seed)
    return a + (b - a) * fu + (c - a) * fv + (a - b - c + d) * fu * fv


def _fbm(u: np.ndarray, v: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Fractal noise in [0, 1): octaves of value noise, each twice as fine and half as strong."""
    total = np.zeros(np.shape(u), np.float32)
    for octave in range(octaves):
        total += _noise(u * 2 ** octave, v * 2 ** octave, seed + octave) * 0.5 ** octave
    return total / (2 - 0.5 ** (octaves - 1))


def _hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) RGB from hue, saturation, value in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0], np.float32)[None] + np.asarray(h, np.float32)[:, None] * 6) % 6
    ramp = np.clip(np.minimum(k, 4 - k), 0, 1)
    return np.asarray(v, np.float32)[:, None] * (1 - np.asarray(s, np.float32)[:, None] * ramp)


@dataclass(frozen=True)
class _Patch:
    """The hits of one face of one surface: coordinates on the face relative to its centre (the
    room faces use world coordinates), the face's half extents and whether it is the front."""

    u: np.ndarray
    v: np.ndarray
    half_u: float
    half_v: float
    front: bool
    colour: np.ndarray
    seed: int

    def shade(self, factor: np.ndarray, colour: np.ndarray | None = None) -> np.ndarray:
        base = self.colour if colour is None else colour
        return np.clip(np.asarray(factor, np.float32)[:, None] * base[None], 0, 1)

    def border(self, width: float) -> np.ndarray:
        """Hits within ``width`` of the face's edge (a frame)."""
        return (np.abs(self.u) > self.half_u - width) | (np.abs(self.v) > self.half_v - width)


Material = Callable[[_Patch], "tuple[np.ndarray, np.ndarray | None]"]  # -> (sRGB albedo (N, 3), pane mask)


def _plain(p: _Patch):
    return p.shade(np.ones(p.u.shape)), None


def _paint(p: _Patch):
    return p.shade(0.97 + 0.06 * _fbm(p.u * 2, p.v * 2, p.seed)), None


def _fabric(p: _Patch):
    return p.shade(0.86 + 0.2 * _fbm(p.u * 5, p.v * 5, p.seed)), None


def _carpet(p: _Patch):
    return p.shade(0.8 + 0.3 * _fbm(p.u * 3, p.v * 3, p.seed)), None


def _wood(p: _Patch):
    grain = np.sin(2 * np.pi * (p.v * 12 + 3 * _noise(p.u * 1.5, p.v * 5, p.seed)))
    return p.shade(0.95 + 0.05 * grain), None


def _planks(p: _Patch):
    width = 0.1 + 0.1 * float(_hash(0, 0, p.seed))
    row = np.floor(p.v / width)
    length = 1.2
    offset = _hash(row, 1, p.seed)
    piece = np.floor(p.u / length + offset)
    tone = 0.78 + 0.34 * _hash(row, piece, p.seed)
    grain = 0.06 * np.sin(2 * np.pi * (p.v * 12 + 3 * _noise(p.u * 2, p.v * 6, p.seed + 3)))
    seam = (np.mod(p.v / width, 1) < 0.04) | (np.mod(p.u / length + offset, 1) < 0.006)
    return p.shade(np.where(seam, 0.55, tone + grain)), None


def _tiles(p: _Patch):
    size = 0.3 + 0.3 * float(_hash(0, 0, p.seed))
    i, j = np.floor(p.u / size), np.floor(p.v / size)
    grout = (np.mod(p.u / size, 1) < 0.012 / size) | (np.mod(p.v / size, 1) < 0.012 / size)
    tone = 0.93 + 0.1 * _hash(i, j, p.seed) + 0.04 * _noise(p.u * 10, p.v * 10, p.seed)
    return p.shade(np.where(grout, 0.72, tone)), None


def _ceiling_tiles(p: _Patch):
    grid = (np.mod(p.u / 0.6, 1) < 0.025) | (np.mod(p.v / 0.6, 1) < 0.025)
    return p.shade(np.where(grid, 0.7, 0.96 + 0.05 * _noise(p.u * 8, p.v * 8, p.seed))), None


def _panels(p: _Patch):
    """Cabinet doors: grooves between doors, a frame and a handle per door."""
    if not p.front:
        return _paint(p)
    doors = max(1, round(2 * p.half_u / 0.5))
    door = 2 * p.half_u / doors
    x = np.mod(p.u + p.half_u, door)
    groove = (x < 0.01) | (x > door - 0.01) | p.border(0.012)
    handle = (np.abs(x - (door - 0.06 if doors % 2 else 0.06)) < 0.012) & (np.abs(p.v - 0.6 * p.half_v) < 0.05)
    return p.shade(np.where(groove, 0.6, np.where(handle, 0.35, 1.0))), None


def _books(p: _Patch):
    """Book spines of random colours (one width per row) on the front face; paper elsewhere."""
    if not p.front:
        return p.shade(np.ones(p.u.shape), np.array([0.88, 0.85, 0.76], np.float32)), None
    spine = np.floor((p.u + p.half_u) / (0.02 + 0.025 * float(_hash(0, 0, p.seed))))
    colours = _hsv(_hash(spine, 1, p.seed), 0.25 + 0.6 * _hash(spine, 2, p.seed), 0.2 + 0.65 * _hash(spine, 3, p.seed))
    label_band = np.abs(p.v - (0.4 * _hash(spine, 4, p.seed) - 0.2) * p.half_v) < 0.012
    return np.where(label_band[:, None], 0.9, colours).astype(np.float32), None


def _picture(p: _Patch):
    """A framed picture: a smooth mix of three colours inside a frame of the part's colour."""
    if not p.front:
        return _plain(p)
    palette = _hsv(_hash(np.arange(3), 0, p.seed), 0.2 + 0.7 * _hash(np.arange(3), 1, p.seed),
                   0.25 + 0.7 * _hash(np.arange(3), 2, p.seed))
    scale = 2 + 4 * float(_hash(0, 3, p.seed))
    a = _fbm(p.u * scale, p.v * scale, p.seed)[:, None]
    b = _fbm(p.u * scale, p.v * scale, p.seed + 11)[:, None]
    art = palette[0] * (1 - a) + palette[1] * a
    art = art * (1 - b * 0.8) + palette[2] * b * 0.8
    return np.where(p.border(0.035)[:, None], p.colour[None], art).astype(np.float32), None


def _window(p: _Patch):
    """A window: frame and mullions of the part's colour around panes of bright sky (emissive)."""
    if not p.front:
        return _plain(p)
    pane = ~p.border(0.05) & (np.abs(p.u) > 0.025)
    if p.half_v > 0.6:
        pane &= np.abs(p.v - 0.3 * p.half_v) > 0.02
    sky = 0.5 + 0.5 * (p.v + p.half_v) / (2 * p.half_v)
    glass = np.array([0.78, 0.86, 0.97], np.float32)[None] * sky[:, None] + 0.25 * _fbm(p.u, p.v, p.seed)[:, None]
    return np.where(pane[:, None], np.clip(glass, 0, 1), p.colour[None]).astype(np.float32), pane


def _screen(p: _Patch):
    """A TV or monitor: a dark screen with a faint reflection inside a bezel of the part's colour."""
    if not p.front:
        return _plain(p)
    pane = ~p.border(0.025)
    glow = 0.05 + 0.06 * np.clip((p.u / p.half_u + p.v / p.half_v) * 0.5 + 0.5, 0, 1)
    screen = np.array([0.9, 0.95, 1.0], np.float32)[None] * glow[:, None]
    return np.where(pane[:, None], screen, p.colour[None]).astype(np.float32), pane


def _mirror(p: _Patch):
    if not p.front:
        return _plain(p)
    pane = ~p.border(0.03)
    glass = np.array([0.62, 0.67, 0.7], np.float32)[None] * (0.75 + 0.3 * _fbm(p.u * 1.5, p.v * 1.5, p.seed))[:, None]
    return np.where(pane[:, None], glass, p.colour[None]).astype(np.float32), pane


def _sheet(p: _Patch):
    """Bed linen: soft folds, striped on some beds."""
    folds = 0.88 + 0.18 * _fbm(p.u * 2.5, p.v * 2.5, p.seed)
    if _hash(0, 1, p.seed) < 0.35:
        folds = folds * np.where(np.mod(p.u * 5, 1) < 0.5, 0.8, 1.0)
    return p.shade(folds), None


def _lamp(p: _Patch):
    """A ceiling light panel: emissive on every face."""
    return p.shade(np.ones(p.u.shape)), np.ones(p.u.shape, bool)


MATERIALS: dict[str, Material] = {
    "plain": _plain, "paint": _paint, "fabric": _fabric, "carpet": _carpet, "wood": _wood, "planks": _planks,
    "tiles": _tiles, "ceiling_tiles": _ceiling_tiles, "panels": _panels, "books": _books, "picture": _picture,
    "window": _window, "screen": _screen, "mirror": _mirror, "sheet": _sheet, "lamp": _lamp,
}
EMISSIVE = frozenset({"window", "lamp"})  # their panes are light sources, not shaded


# --------------------------------------------------------------------------------------------
# Rendering


def _face_uv(face: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two in-plane coordinates of (3, N) points on a face of axis face // 2: (y, z), (x, z) or (x, y)."""
    first, second = [(1, 2), (0, 2), (0, 1)][face // 2]
    return points[first], points[second]


def _albedo(scene: Scene, points: np.ndarray, surface: np.ndarray, face: np.ndarray):
    """Per-hit sRGB albedo, emissive mask and pane mask, material by material."""
    n = len(surface)
    albedo = np.empty((n, 3), np.float32)
    emissive = np.zeros(n, bool)
    pane = np.zeros(n, bool)
    key = surface.astype(np.int64) * 8 + face
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    for group_key, index in zip(keys, np.split(order, starts[1:])):
        sid, f = divmod(int(group_key), 8)
        if sid < ROOM_FACES:
            u, v = _face_uv(f, points[:, index])
            finishes = [(np.ones(len(index), bool), scene.faces[sid])]
            for decal in scene.decals:
                if decal.face == sid:
                    inside = (u >= decal.lo[0]) & (u <= decal.hi[0]) & (v >= decal.lo[1]) & (v <= decal.hi[1])
                    finishes[0][0][inside] = False
                    finishes.append((inside, decal.finish))
            for mask, finish in finishes:
                if mask.any():
                    patch = _Patch(u[mask], v[mask], math.inf, math.inf, False,
                                   np.asarray(finish.colour, np.float32), finish.texture_seed)
                    albedo[index[mask]], _ = MATERIALS[finish.material](patch)
            continue
        part = scene.parts[sid - ROOM_FACES]
        rel = points[:, index] - np.asarray(part.centre, np.float32)[:, None]
        cos, sin = math.cos(part.yaw), math.sin(part.yaw)
        local = np.stack([cos * rel[0] + sin * rel[1], -sin * rel[0] + cos * rel[1], rel[2]])
        u, v = _face_uv(f, local)
        half_u, half_v = _face_uv(f, np.asarray(part.half, np.float32)[:, None])
        patch = _Patch(u, v, float(half_u[0]), float(half_v[0]), f // 2 == 1,
                       np.asarray(part.colour, np.float32), part.texture_seed)
        albedo[index], part_pane = MATERIALS[part.material](patch)
        if part_pane is not None:
            pane[index] = part_pane & part.no_return
            emissive[index] = part_pane & (part.material in EMISSIVE)
    return albedo, emissive, pane


SHADOW_MAP_SIZE = 192
SHADOW_MAP_TAN = 2.4  # half-width of the light's view: tan(67 degrees) covers any room from the ceiling


def _light_view(scene: Scene) -> _View:
    """The ceiling light looking straight down: x east, y south (image down), z down."""
    focal = SHADOW_MAP_SIZE / 2 / SHADOW_MAP_TAN
    centre = (SHADOW_MAP_SIZE - 1) / 2
    rotation = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]]).T
    return _View(np.asarray(scene.light, np.float64), rotation, focal, focal, centre, centre,
                 SHADOW_MAP_SIZE, SHADOW_MAP_SIZE)


def _light_visibility(scene: Scene, geometry: _Geometry, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Fraction (0..1) of each point lit by the ceiling light: a shadow map with bilinear filtering."""
    view = _light_view(scene)
    depth_map = _cast(view, geometry)[0]
    light = view.position.astype(np.float32)[:, None]
    q = _rotate(view.rotation.T, points - light)
    z = q[2]
    ahead = z > 0.05
    z_safe = np.where(ahead, z, 1.0)
    u = view.fx * q[0] / z_safe + view.cx
    v = view.fy * q[1] / z_safe + view.cy
    # Depth slope bias: a map texel spans more depth the more grazing the light falls.
    to_light = light - points
    cos = np.abs(np.sum(normals * to_light, 0) / np.linalg.norm(to_light, axis=0).clip(1e-6)).clip(0.1, 1)
    bias = 0.02 + 2.5 * z / view.fx * np.sqrt(1 - cos ** 2) / cos
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    visibility = np.zeros(points.shape[1], np.float32)
    for du, dv, weight in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
        col = np.clip(u0 + du, 0, view.width - 1).astype(np.int64)
        row = np.clip(v0 + dv, 0, view.height - 1).astype(np.int64)
        visibility += weight * (z <= depth_map[row, col] + bias)
    outside = ~ahead | (u < 0) | (u > view.width - 1) | (v < 0) | (v > view.height - 1)
    return np.where(outside, 1.0, visibility).astype(np.float32)


def _blob_mask(blobs: tuple[Blob, ...], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for blob in blobs:
        # the noise moves the outline by at most 0.45 of the radius: evaluate only around the ellipse
        reach = 1.5 * max(blob.radii)
        (x0, y0), (x1, y1) = ((blob.centre[0] + sign * reach, blob.centre[1] + sign * reach) for sign in (-1, 1))
        rows = slice(max(0, math.floor(y0 * height)), min(height, math.ceil(y1 * height)))
        cols = slice(max(0, math.floor(x0 * width)), min(width, math.ceil(x1 * width)))
        y, x = np.mgrid[rows, cols].astype(np.float32)
        x, y = (x + 0.5) / width, (y + 0.5) / height
        cos, sin = math.cos(blob.angle), math.sin(blob.angle)
        dx, dy = x - blob.centre[0], y - blob.centre[1]
        r2 = ((cos * dx + sin * dy) / blob.radii[0]) ** 2 + ((-sin * dx + cos * dy) / blob.radii[1]) ** 2
        mask[rows, cols] |= r2 + 0.9 * (_fbm(x * 12, y * 12, blob.seed) - 0.5) < 1
    return mask


def _projector_shadow(depth: np.ndarray, fx: float) -> np.ndarray:
    """Pixels the Kinect's projector cannot see past a nearer surface to their right.

    The projector sits KINECT_BASELINE_M beside the IR camera, so the projector ray to a pixel of
    disparity D passes k pixels to its right at disparity D + k: the pixel is in shadow if the
    surface k pixels right of it is nearer than that, for some k (disparity = baseline * fx / z).
    """
    disparity = KINECT_BASELINE_M * fx / depth
    reach = math.ceil(KINECT_BASELINE_M * fx * (1 / DEPTH_RANGE_M[0] - 1 / DEPTH_RANGE_M[1]))
    shadow = np.zeros(depth.shape, bool)
    for k in range(1, min(reach, depth.shape[1] - 1) + 1):
        shadow[:, :-k] |= disparity[:, k:] - disparity[:, :-k] > k
    return shadow


def _blur(image: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 blur along both image axes (the softness of the Kinect's RGB optics)."""
    rows = np.pad(image, ((1, 1), (0, 0), (0, 0)), mode="edge")
    image = (rows[:-2] + 2 * rows[1:-1] + rows[2:]) / 4
    cols = np.pad(image, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return (cols[:, :-2] + 2 * cols[:, 1:-1] + cols[:, 2:]) / 4


def render(scene: Scene, height: int, width: int) -> dict[str, np.ndarray]:
    """The canonical sample (mbmt.data.hdf5) of ``scene`` seen at ``height`` x ``width`` pixels."""
    geometry = _Geometry(scene.size, scene.parts)
    fx, fy, cx, cy = intrinsics(height, width)
    view = _View(np.asarray(scene.camera_position, np.float64), np.asarray(scene.camera_rotation, np.float64),
                 fx, fy, cx, cy, height, width)
    depth, surface, face, directions = _cast(view, geometry)
    flat_surface, flat_face = surface.ravel(), face.ravel().astype(np.int64)
    points = view.position.astype(np.float32)[:, None] + directions.reshape(3, -1) * depth.ravel()[None]
    world_normals = _normals(flat_surface, flat_face, geometry.yaw)
    camera_normals = _rotate(view.rotation.T, world_normals)

    labels = np.array([WALL, WALL, WALL, WALL, FLOOR, CEILING] + [p.label for p in scene.parts], np.int64)
    semantic = labels[surface]
    semantic[_blob_mask(scene.unlabelled, height, width)] = IGNORE_LABEL

    albedo, emissive, pane = _albedo(scene, points, flat_surface, flat_face)
    linear_albedo = albedo ** 2.2
    to_light = np.asarray(scene.light, np.float32)[:, None] - points
    distance = np.linalg.norm(to_light, axis=0).clip(1e-3)
    lambert = np.sum(world_normals * to_light, 0) / distance
    visibility = _light_visibility(scene, geometry, points, world_normals)
    direct = 1.6 * lambert.clip(0) * visibility / (1 + (distance / 2.5) ** 2)  # softened inverse-square fall-off
    ambient = 0.2 * (0.85 + 0.15 * world_normals[2])  # light bounced off the walls, a little more from above
    if scene.fill is not None:
        direction, strength = scene.fill
        ambient += strength * np.sum(world_normals * -np.asarray(direction, np.float32)[:, None], 0).clip(0)
    irradiance = ambient[:, None] + direct[:, None] * np.asarray(scene.light_colour, np.float32)[None]
    radiance = linear_albedo * irradiance
    brightness = radiance.mean(1)
    reference = np.percentile(brightness[~emissive], 90) if (~emissive).any() else 1.0
    radiance *= scene.exposure ** 2.2 / max(reference, 1e-6)
    radiance[emissive] = linear_albedo[emissive] * 1.6
    image = _blur(radiance.reshape(height, width, 3).clip(0, 1) ** (1 / 2.2))
    noise = 0.012 * np.random.default_rng(scene.noise_seed).standard_normal(image.shape, np.float32)
    image = (image + noise).clip(0, 1).astype(np.float32)

    invalid = (depth < DEPTH_RANGE_M[0]) | (depth > DEPTH_RANGE_M[1]) | pane.reshape(height, width)
    invalid |= _projector_shadow(depth, fx) | _blob_mask(scene.depth_dropouts, height, width)
    depth = np.where(invalid, 0.0, depth).astype(np.float32)
    normal = np.where(invalid[..., None], 0.0, camera_normals.reshape(3, height, width).transpose(1, 2, 0))
    return {"image": image, "semantic": semantic, "depth": depth, "normal": normal}


# --------------------------------------------------------------------------------------------
# Scene layout: furniture built from boxes in an item frame, then placed in the room.


@dataclass(frozen=True)
class _Spec:
    """A box in an item's frame: x along the item's width (centred), y from its back (0) into the
    room, z up from the floor."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    label: int
    material: str
    colour: tuple[float, float, float]
    yaw: float = 0.0
    no_return: bool = False


def _slab(x0, x1, y0, y1, z0, z1, label, material, colour, no_return=False) -> _Spec:
    return _Spec(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
                 label, material, tuple(colour), 0.0, no_return)


def _moved(specs: list[_Spec], dx: float = 0.0, dy: float = 0.0, yaw: float = 0.0, dz: float = 0.0) -> list[_Spec]:
    """``specs`` turned by ``yaw`` about the origin, then shifted."""
    cos, sin = math.cos(yaw), math.sin(yaw)
    return [replace(s, centre=(cos * s.centre[0] - sin * s.centre[1] + dx, sin * s.centre[0] + cos * s.centre[1] + dy,
                               s.centre[2] + dz), yaw=s.yaw + yaw) for s in specs]


def _extent(specs: list[_Spec]) -> np.ndarray:
    """[[xmin, ymin, zmin], [xmax, ymax, zmax]] of the specs' boxes in their frame."""
    centre = np.array([s.centre for s in specs])
    half = np.array([s.half for s in specs])
    yaw = np.array([s.yaw for s in specs])[:, None]
    corner = np.array([(-1, -1), (-1, 1), (1, -1), (1, 1)])[None] * half[:, None, :2]  # (n, 4, 2)
    x = centre[:, None, 0] + np.cos(yaw) * corner[..., 0] - np.sin(yaw) * corner[..., 1]
    y = centre[:, None, 1] + np.sin(yaw) * corner[..., 0] + np.cos(yaw) * corner[..., 1]
    return np.array([[x.min(), y.min(), (centre[:, 2] - half[:, 2]).min()],
                     [x.max(), y.max(), (centre[:, 2] + half[:, 2]).max()]])


WALL_PAINTS = [(0.92, 0.9, 0.84), (0.88, 0.86, 0.8), (0.84, 0.86, 0.87), (0.93, 0.88, 0.76), (0.8, 0.85, 0.78),
               (0.86, 0.8, 0.72), (0.9, 0.78, 0.68), (0.76, 0.81, 0.88), (0.95, 0.95, 0.93), (0.72, 0.7, 0.66)]
WOODS = [(0.55, 0.38, 0.22), (0.66, 0.48, 0.3), (0.42, 0.28, 0.17), (0.76, 0.6, 0.42), (0.32, 0.21, 0.13)]
LAMINATES = WOODS + [(0.9, 0.9, 0.88), (0.82, 0.82, 0.8), (0.18, 0.18, 0.19), (0.45, 0.45, 0.47)]
FABRICS = [(0.45, 0.45, 0.48), (0.55, 0.42, 0.3), (0.25, 0.32, 0.5), (0.55, 0.2, 0.18), (0.35, 0.45, 0.3),
           (0.75, 0.7, 0.6), (0.3, 0.22, 0.18), (0.2, 0.2, 0.22)]
CARPETS = [(0.5, 0.48, 0.45), (0.4, 0.38, 0.45), (0.6, 0.52, 0.4), (0.35, 0.4, 0.48), (0.55, 0.3, 0.28),
           (0.3, 0.3, 0.3)]
TILES = [(0.85, 0.83, 0.78), (0.7, 0.7, 0.7), (0.9, 0.9, 0.9), (0.72, 0.62, 0.5), (0.55, 0.5, 0.45)]
SHEETS = [(0.93, 0.93, 0.91), (0.8, 0.85, 0.93), (0.9, 0.82, 0.8), (0.7, 0.76, 0.64), (0.5, 0.56, 0.72),
          (0.8, 0.4, 0.35)]
WHITES = [(0.92, 0.92, 0.9), (0.85, 0.86, 0.86), (0.95, 0.94, 0.9)]
DARKS = [(0.12, 0.12, 0.13), (0.2, 0.2, 0.22), (0.3, 0.3, 0.32)]

# Room types, weighted roughly as NYUv2's scenes (bedrooms, kitchens and living rooms first),
# with (x, y) size ranges in metres.
ROOM_KINDS = {
    "bedroom": (0.27, (3.0, 5.0), (3.2, 5.5)),
    "living_room": (0.2, (3.5, 6.0), (3.5, 7.0)),
    "kitchen": (0.15, (2.6, 5.0), (3.0, 6.0)),
    "dining_room": (0.1, (3.2, 5.5), (3.5, 6.0)),
    "office": (0.13, (3.5, 8.0), (4.0, 9.5)),
    "study": (0.08, (3.5, 6.0), (3.5, 7.0)),
    "bathroom": (0.07, (2.0, 3.2), (2.2, 3.6)),
}


class _Layout:
    """Draws one room: places items without overlaps, then the camera, the light and the holes."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        names = list(ROOM_KINDS)
        weights = np.array([ROOM_KINDS[k][0] for k in names])
        self.kind = names[rng.choice(len(names), p=weights / weights.sum())]
        _, xr, yr = ROOM_KINDS[self.kind]
        self.size = (float(rng.uniform(*xr)), float(rng.uniform(*yr)), float(rng.uniform(2.4, 3.0)))
        self.parts: list[Part] = []
        self.decals: list[Decal] = []
        self.occupied: list[np.ndarray] = []  # (2, 3) world boxes [lo, hi] of everything placed
        self.targets: list[np.ndarray] = []  # centres of furniture the camera may look at
        self.windows: list[int] = []  # walls with a window

    # -- random helpers
    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def integer(self, lo: int, hi: int | None = None) -> int:
        """Uniform in lo..hi - 1 (0..lo - 1 without ``hi``)."""
        return int(self.rng.integers(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def colour(self, palette) -> tuple[float, float, float]:
        base = np.asarray(palette[self.integer(len(palette))])
        jitter = self.rng.uniform(0.9, 1.08) * self.rng.uniform(0.96, 1.04, 3)
        return tuple(float(c) for c in np.clip(base * jitter, 0, 1))

    def vivid(self) -> tuple[float, float, float]:
        rgb = _hsv(np.array([self.rng.random()]), np.array([self.rng.uniform(0.3, 0.9)]),
                   np.array([self.rng.uniform(0.3, 0.95)]))
        return tuple(float(c) for c in rgb[0])

    def seed(self) -> int:
        return self.integer(1 << 30)

    # -- walls: w = 0 (y=0), 1 (x=lx), 2 (y=ly), 3 (x=0), walked anticlockwise seen from above
    def wall_frame(self, w: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(corner where the wall starts, unit vector along it, its length); inwards is along turned +90 degrees."""
        lx, ly, _ = self.size
        corner = [(0.0, 0.0), (lx, 0.0), (lx, ly), (0.0, ly)][w]
        along = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][w]
        return np.array(corner), np.array(along), (lx, ly)[w % 2]

    @staticmethod
    def wall_face(w: int) -> int:
        return (2, 1, 3, 0)[w]

    def fits(self, box: np.ndarray, margin: float) -> bool:
        """Whether a world box lies in the room, ``margin`` (horizontally) clear of everything placed."""
        lx, ly, hz = self.size
        if (box[0] < -1e-6).any() or box[1, 0] > lx + 1e-6 or box[1, 1] > ly + 1e-6 or box[1, 2] > hz:
            return False
        if not self.occupied:
            return True
        lo, hi = np.array(self.occupied).transpose(1, 0, 2)  # (k, 3) each
        apart = ((box[0, :2] >= hi[:, :2] + margin) | (box[1, :2] <= lo[:, :2] - margin)).any(1)
        apart |= (box[0, 2] >= hi[:, 2]) | (box[1, 2] <= lo[:, 2])
        return bool(apart.all())

    def reserve(self, box: np.ndarray, margin: float) -> bool:
        """Claim a world box if it fits."""
        if not self.fits(box, margin):
            return False
        self.occupied.append(box)
        return True

    def place(self, specs: list[_Spec], origin: np.ndarray, yaw: float, margin: float) -> bool:
        """Add the item at ``origin`` turned by ``yaw`` if it fits."""
        moved = _moved(specs, float(origin[0]), float(origin[1]), yaw)
        box = _extent(moved)
        if not self.reserve(box, margin):
            return False
        if box[0, 2] < 0.3:
            self.targets.append(box.mean(0))
        for s in moved:
            self.parts.append(Part(s.centre, s.half, s.yaw, s.label, s.material, s.colour, self.seed(), s.no_return))
        return True

    def against_wall(self, specs: list[_Spec], *, wall: int | None = None, tries: int = 12) -> bool:
        """Place an item with its back (y=0) against a wall; False if no free place was found."""
        lo, hi = _extent(specs)
        lengths = np.array([self.wall_frame(w)[2] for w in range(4)])
        for _ in range(tries):
            w = int(self.rng.choice(4, p=lengths / lengths.sum())) if wall is None else wall
            corner, along, length = self.wall_frame(w)
            if hi[0] - lo[0] + 0.1 > length:
                continue
            s = self.uniform(0.05 - lo[0], length - 0.05 - hi[0])
            if self.place(specs, corner + s * along, w * math.pi / 2, margin=0.05):
                return True
        return False

    def free_standing(self, specs: list[_Spec], tries: int = 12) -> bool:
        """Place an item anywhere on the floor, turned by a multiple of 90 degrees plus a little."""
        lx, ly, _ = self.size
        for _ in range(tries):
            yaw = self.integer(4) * math.pi / 2 + self.uniform(-0.2, 0.2)
            origin = np.array([self.uniform(0.3, lx - 0.3), self.uniform(0.3, ly - 0.3)])
            if self.place(specs, origin, yaw, margin=0.4):
                return True
        return False

    # -- furniture in the item frame
    def table(self, width, depth, height, label=TABLE, colour=None, material="wood") -> list[_Spec]:
        colour = colour or self.colour(LAMINATES)
        leg = 0.045
        specs = [_slab(-width / 2, width / 2, 0, depth, height - 0.035, height, label, material, colour)]
        for x in (-width / 2 + 0.03, width / 2 - 0.03 - leg):
            for y in (0.03, depth - 0.03 - leg):
                specs.append(_slab(x, x + leg, y, y + leg, 0, height - 0.035, label, "plain", colour))
        return specs

    def chair(self, office: bool = False) -> list[_Spec]:
        """A chair facing +y, its back at y = 0."""
        width, depth, seat = self.uniform(0.4, 0.5), self.uniform(0.4, 0.5), self.uniform(0.42, 0.48)
        colour = self.colour(DARKS + FABRICS if office else WOODS + FABRICS + DARKS)
        material = "fabric" if office or self.chance(0.4) else "wood"
        top = seat + self.uniform(0.35, 0.5)
        specs = [_slab(-width / 2, width / 2, 0.03, depth, seat - 0.06, seat, CHAIR, material, colour),
                 _slab(-width / 2, width / 2, 0, 0.05, seat, top, CHAIR, material, colour)]
        if office:
            mid = depth / 2  # a swivel chair: a column on a star base (a flat box here)
            specs += [_slab(-0.025, 0.025, mid - 0.025, mid + 0.025, 0.08, seat - 0.06, CHAIR, "plain", DARKS[0]),
                      _slab(-0.3, 0.3, mid - 0.3, mid + 0.3, 0.0, 0.08, CHAIR, "plain", DARKS[0])]
        else:
            leg = 0.035
            for x in (-width / 2, width / 2 - leg):
                for y in (0.0, depth - leg):
                    specs.append(_slab(x, x + leg, y, y + leg, 0, seat - 0.06, CHAIR, "plain", colour))
        return specs

    def sofa(self, width: float, label: int = SOFA) -> list[_Spec]:
        depth, colour = self.uniform(0.8, 0.95), self.colour(FABRICS)
        seat, back, arm = self.uniform(0.4, 0.46), self.uniform(0.75, 0.9), self.uniform(0.55, 0.65)
        specs = [_slab(-width / 2 + 0.15, width / 2 - 0.15, 0.2, depth, 0, seat, label, "fabric", colour),
                 _slab(-width / 2, width / 2, 0, 0.22, 0, back, label, "fabric", colour),
                 _slab(-width / 2, -width / 2 + 0.15, 0.2, depth, 0, arm, label, "fabric", colour),
                 _slab(width / 2 - 0.15, width / 2, 0.2, depth, 0, arm, label, "fabric", colour)]
        if label == SOFA and self.chance(0.6):  # throw pillows
            for _ in range(self.integer(1, 3)):
                x = self.uniform(-width / 2 + 0.2, width / 2 - 0.6)
                specs.append(_slab(x, x + 0.4, 0.2, 0.33, seat, seat + 0.38, OBJECTS, "fabric", self.vivid()))
        return specs

    def bed(self) -> list[_Spec]:
        width, length, height = self.uniform(1.0, 1.9), self.uniform(1.95, 2.2), self.uniform(0.45, 0.62)
        frame = self.colour(WOODS + FABRICS)
        specs = [_slab(-width / 2, width / 2, 0.05, length, 0, height - 0.2, BED, "wood", frame),
                 _slab(-width / 2 + 0.02, width / 2 - 0.02, 0.06, length - 0.01, height - 0.2, height, BED, "sheet",
                       self.colour(SHEETS)),
                 _slab(-width / 2, width / 2, 0, 0.06, 0, height + self.uniform(0.35, 0.65), BED, "wood", frame)]
        pillows = 1 if width < 1.3 else 2
        pillow = self.colour(WHITES + SHEETS)
        for i in range(pillows):
            x0 = -width / 2 + 0.06 + i * (width - 0.12) / pillows
            specs.append(_slab(x0 + 0.02, x0 + (width - 0.12) / pillows - 0.02, 0.1, 0.45, height, height + 0.13,
                               OBJECTS, "fabric", pillow))
        if self.chance(0.5):  # a blanket folded over the foot
            specs.append(_slab(-width / 2 - 0.01, width / 2 + 0.01, length - 0.55, length + 0.01, height - 0.3,
                               height + 0.02, BED, "sheet", self.colour(SHEETS)))
        return specs

    def cabinet(self, width, depth, height, label=FURNITURE) -> list[_Spec]:
        colour = self.colour(LAMINATES)
        return [_slab(-width / 2, width / 2, 0, depth, 0, height, label, "panels", colour)]

    def clutter(self, x0, x1, y0, y1, z, count) -> list[_Spec]:
        """Small things on a top: objects, book stacks, and some nobody annotated (label -1)."""
        specs = []
        slot = (x1 - x0) / max(count, 1)
        for i in range(count):
            w = min(self.uniform(0.06, 0.3), slot * 0.8)
            d = min(self.uniform(0.06, 0.25), (y1 - y0) * 0.9)
            if w < 0.03 or d < 0.03:
                continue
            x = x0 + i * slot + self.uniform(0, slot - w)
            y = self.uniform(y0, y1 - d)
            kind = self.rng.random()
            if kind < 0.15:
                specs.append(_slab(x, x + w, y, y + d, z, z + self.uniform(0.04, 0.15), BOOKS, "books", self.vivid()))
            else:
                label = IGNORE_LABEL if kind < 0.4 else OBJECTS
                specs.append(_slab(x, x + w, y, y + d, z, z + self.uniform(0.04, 0.35), label,
                                   "plain" if self.chance(0.6) else "fabric", self.vivid()))
        return specs

    def bookshelf(self, width, depth, height) -> list[_Spec]:
        colour = self.colour(LAMINATES)
        board = 0.02
        specs = [_slab(-width / 2, -width / 2 + board, 0, depth, 0, height, FURNITURE, "wood", colour),
                 _slab(width / 2 - board, width / 2, 0, depth, 0, height, FURNITURE, "wood", colour),
                 _slab(-width / 2, width / 2, 0, board, 0, height, FURNITURE, "wood", colour),
                 _slab(-width / 2, width / 2, 0, depth, height - board, height, FURNITURE, "wood", colour)]
        levels = np.arange(0.05, height - 0.25, self.uniform(0.3, 0.4))
        for z in levels:
            inner = width / 2 - board
            specs.append(_slab(-inner, inner, board, depth, z, z + board, FURNITURE, "wood", colour))
            top = min(z + 0.38, height - board) - 0.03
            x = -width / 2 + board
            while x < width / 2 - board - 0.1:
                w = min(self.uniform(0.15, 0.6), width / 2 - board - x)
                if self.chance(0.8):
                    h = self.uniform(0.15, max(0.16, top - z - board))
                    if self.chance(0.2):
                        specs += self.clutter(x, x + w, board + 0.02, depth - 0.02, z + board, 1)
                    else:
                        specs.append(_slab(x, x + w, board + 0.01, depth - self.uniform(0.0, 0.08), z + board,
                                           z + board + h, BOOKS, "books", (0.5, 0.5, 0.5)))
                x += w + self.uniform(0.0, 0.1)
        return specs

    def tv(self, width, z0, y0) -> list[_Spec]:
        height = width * 0.58
        return [_slab(-width / 2, width / 2, y0, y0 + 0.06, z0, z0 + height, TV, "screen", self.colour(DARKS),
                      self.chance(0.5))]

    def lamp(self, x, y, z) -> list[_Spec]:
        """A table lamp: base and shade (NYUv2 maps lamps to objects)."""
        shade = self.colour(WHITES + [(0.9, 0.85, 0.7)])
        return [_slab(x - 0.04, x + 0.04, y - 0.04, y + 0.04, z, z + 0.3, OBJECTS, "plain", self.colour(DARKS + WOODS)),
                _slab(x - 0.15, x + 0.15, y - 0.15, y + 0.15, z + 0.3, z + 0.5, OBJECTS, "fabric", shade)]

    # -- things on walls
    def picture(self) -> None:
        w, h = self.uniform(0.3, 1.2), self.uniform(0.3, 0.9)
        z0 = self.uniform(1.0, 1.9 - h / 2)
        frame = self.colour(WOODS + DARKS + WHITES)
        self.against_wall([_slab(-w / 2, w / 2, 0, self.uniform(0.02, 0.04), z0, z0 + h, PICTURE, "picture", frame)])

    def window(self) -> None:
        w, sill = self.uniform(0.7, 2.0), self.uniform(0.7, 1.1)
        top = min(sill + self.uniform(1.0, 1.6), self.size[2] - 0.2)
        frame = self.colour(WHITES + WOODS)
        specs = [_slab(-w / 2, w / 2, 0, 0.03, sill, top, WINDOW, "window", frame, self.chance(0.6))]
        if self.chance(0.45):  # curtains (NYUv2 maps curtains and blinds to window)
            fabric = self.colour(FABRICS + SHEETS)
            bottom = 0.02 if self.chance(0.5) else sill - 0.15
            for side in (-1, 1):
                cw = self.uniform(0.25, 0.45)
                x0 = side * (w / 2 + 0.05) - (cw if side < 0 else 0) + side * self.uniform(-0.15, 0.0)
                specs.append(_slab(x0, x0 + cw, 0.04, 0.1, bottom, top + 0.15, WINDOW, "fabric", fabric))
        for w_index in self.rng.permutation(4):
            if self.against_wall(specs, wall=int(w_index), tries=4):
                self.windows.append(int(w_index))
                return

    def door(self) -> None:
        """A door as a decal on a wall (NYUv2 labels doors as wall); the floor in front stays free."""
        width, height = self.uniform(0.8, 0.95), self.uniform(2.0, 2.1)
        for w in (int(w) for w in self.rng.permutation(4)):
            corner, along, length = self.wall_frame(w)
            if length < width + 0.4:
                continue
            s = self.uniform(0.15, length - width - 0.15)
            start, end = corner + s * along, corner + (s + width) * along
            swing = end + 0.8 * np.array([-along[1], along[0]])  # kept free of furniture and pictures
            box = np.array([[min(start[0], swing[0]), min(start[1], swing[1]), 0.0],
                            [max(start[0], swing[0]), max(start[1], swing[1]), height]])
            if not self.reserve(box, margin=0.05):
                continue
            face = self.wall_face(w)
            u_axis = 0 if face >= 2 else 1  # a face's first coordinate: x on the y-walls, y on the x-walls
            u0, u1 = sorted((float(start[u_axis]), float(end[u_axis])))
            finish = Finish("wood", self.colour(WOODS), self.seed()) if self.chance(0.6) else \
                Finish("paint", self.colour(WHITES), self.seed())
            self.decals.append(Decal(face, (u0, 0.0), (u1, height), finish))
            return

    # -- rooms
    def furnish(self) -> None:
        getattr(self, f"_{self.kind}")()
        if self.chance(0.6):
            self.door()
        for _ in range(self.integer(0, 3)):
            self.window()
        if self.chance(0.3):
            self.wall_shelf()
        for _ in range(self.integer(0, 6)):
            self.picture()
        for _ in range(self.integer(2, 9)):
            self.floor_thing()

    def floor_thing(self) -> None:
        """A box, bin, bag or basket on the floor, against a wall or free."""
        w, d, h = self.uniform(0.2, 0.55), self.uniform(0.2, 0.45), self.uniform(0.15, 0.6)
        label = IGNORE_LABEL if self.chance(0.3) else OBJECTS
        specs = [_slab(-w / 2, w / 2, 0.02, d, 0, h, label, "plain" if self.chance(0.5) else "fabric", self.vivid())]
        if not self.against_wall(specs, tries=4):
            self.free_standing(specs, tries=4)

    def wall_shelf(self) -> None:
        """A shelf board on a wall with books and things on it."""
        w, z = self.uniform(0.6, 1.5), self.uniform(1.2, 1.7)
        specs = [_slab(-w / 2, w / 2, 0, 0.25, z - 0.03, z, FURNITURE, "wood", self.colour(LAMINATES))]
        x = -w / 2
        while x < w / 2 - 0.15:
            step = min(self.uniform(0.15, 0.5), w / 2 - x)
            if self.chance(0.6):
                specs.append(_slab(x, x + step, 0.01, self.uniform(0.15, 0.24), z, z + self.uniform(0.15, 0.28),
                                   BOOKS, "books", (0.5, 0.5, 0.5)))
            else:
                specs += self.clutter(x, x + step, 0.02, 0.23, z, 1)
            x += step + self.uniform(0.02, 0.15)
        self.against_wall(specs)

    def storage(self) -> None:
        """A cabinet, dresser, wardrobe or bookshelf against a wall, things on the low ones."""
        if self.chance(0.3):
            self.against_wall(self.bookshelf(self.uniform(0.7, 1.6), self.uniform(0.28, 0.4), self.uniform(1.0, 2.1)))
            return
        w, h = self.uniform(0.5, 1.8), self.uniform(0.5, 2.1)
        specs = self.cabinet(w, self.uniform(0.4, 0.6), h)
        if h < 1.4:
            specs += self.clutter(-w / 2, w / 2, 0.05, 0.35, h, self.integer(0, 5))
        if h < 1.0 and self.chance(0.3):
            specs += self.lamp(self.uniform(-w / 2 + 0.15, w / 2 - 0.15), 0.2, h)
        elif h < 1.0 and w > 0.9 and self.chance(0.3):
            specs += self.tv(self.uniform(0.6, min(1.2, w)), h, 0.1)
        self.against_wall(specs)

    def _bedroom(self):
        if self.against_wall(self.bed()):
            for _ in range(self.integer(0, 3)):
                h = self.uniform(0.45, 0.6)
                stand = self.cabinet(0.45, 0.4, h)
                on_top = self.lamp(0.0, 0.2, h) if self.chance(0.6) else self.clutter(-0.2, 0.2, 0.05, 0.35, h, 2)
                self.against_wall(stand + on_top)
        for _ in range(self.integer(1, 4)):
            self.storage()
        if self.chance(0.35):
            self.desk_set()
        if self.chance(0.3):
            self.against_wall(self.chair())
        if self.chance(0.3):
            self.rug()

    def _living_room(self):
        for _ in range(self.integer(1, 4)):
            self.against_wall(self.sofa(self.uniform(1.5, 2.6)))
        if self.chance(0.8):
            w, d, h = self.uniform(0.8, 1.4), self.uniform(0.5, 0.8), self.uniform(0.38, 0.5)
            self.free_standing(self.table(w, d, h) + self.clutter(-w / 2, w / 2, 0.05, d - 0.05, h, self.integer(0, 5)))
        for _ in range(self.integer(0, 3)):
            self.against_wall(self.sofa(self.uniform(0.8, 1.0), label=CHAIR))  # armchair
        if self.chance(0.75):
            w, h = self.uniform(1.2, 2.0), self.uniform(0.4, 0.6)
            self.against_wall(self.cabinet(w, 0.45, h) + self.tv(self.uniform(0.9, min(1.6, w)), h, 0.12))
        if self.chance(0.4):  # a side table with a lamp
            h = self.uniform(0.5, 0.65)
            self.against_wall(self.table(0.5, 0.5, h) + self.lamp(0.0, 0.25, h))
        for _ in range(self.integer(0, 3)):
            self.storage()
        if self.chance(0.5):
            self.rug()

    def _kitchen(self):
        walls = self.rng.permutation(4)[: self.integer(1, 3)]
        counter_top = self.colour(TILES + DARKS)
        body = self.colour(LAMINATES)
        for w in walls:
            length = self.wall_frame(int(w))[2] * self.uniform(0.5, 0.9)
            specs = [_slab(-length / 2, length / 2, 0, 0.58, 0, 0.86, FURNITURE, "panels", body),
                     _slab(-length / 2, length / 2, 0, 0.62, 0.86, 0.9, FURNITURE, "plain", counter_top)]
            specs += self.clutter(-length / 2, length / 2, 0.05, 0.5, 0.9, self.integer(2, 8))
            self.against_wall(specs, wall=int(w))
            if self.chance(0.7):
                upper = self.uniform(1.45, 1.55)
                wall_cabinets = _slab(-length / 2, length / 2, 0, 0.35, upper, upper + 0.7, FURNITURE, "panels", body)
                self.against_wall([wall_cabinets], wall=int(w))
        self.against_wall([_slab(-0.35, 0.35, 0, 0.7, 0, self.uniform(1.6, 1.9), FURNITURE, "panels",
                                 self.colour(WHITES + DARKS))])  # fridge
        if self.chance(0.5):
            self.dining_set(self.uniform(0.8, 1.2), self.uniform(0.7, 0.9), 2)
        if self.chance(0.5):
            self.storage()

    def _dining_room(self):
        self.dining_set(self.uniform(1.2, 2.0), self.uniform(0.8, 1.1), self.integer(4, 7))
        for _ in range(self.integer(1, 3)):
            self.storage()
        if self.chance(0.4):
            self.against_wall(self.chair())

    def _office(self):
        for _ in range(self.integer(2, 6)):
            self.desk_set()
        for _ in range(self.integer(1, 4)):
            self.storage()
        if self.chance(0.4):
            self.dining_set(self.uniform(1.2, 2.4), self.uniform(0.8, 1.2), self.integer(2, 7))
        if self.chance(0.5):  # whiteboard (objects in NYUv2)
            w = self.uniform(1.2, 2.0)
            board = _slab(-w / 2, w / 2, 0, 0.02, 0.9, 0.9 + w * 0.6, OBJECTS, "picture", (0.96, 0.96, 0.95))
            self.against_wall([board])

    def _study(self):
        for _ in range(self.integer(2, 5)):
            self.against_wall(self.bookshelf(self.uniform(0.8, 1.6), 0.32, self.uniform(1.4, 2.2)))
        if self.chance(0.6):
            self.dining_set(self.uniform(1.0, 1.8), self.uniform(0.7, 1.0), self.integer(2, 5))
        else:
            self.desk_set()
        if self.chance(0.5):
            self.storage()

    def _bathroom(self):
        white = self.colour(WHITES)
        if self.chance(0.7):
            self.against_wall([_slab(-0.8, 0.8, 0, 0.75, 0, 0.55, OBJECTS, "plain", white)])  # bathtub
        self.against_wall([_slab(-0.2, 0.2, 0.15, 0.65, 0, 0.4, OBJECTS, "plain", white),  # toilet
                           _slab(-0.22, 0.22, 0, 0.18, 0.3, 0.75, OBJECTS, "plain", white)])
        w = self.uniform(0.6, 1.0)
        sink = _slab(-0.2, 0.2, 0.1, 0.4, 0.82, 0.9, OBJECTS, "plain", white)
        if self.against_wall(self.cabinet(w, 0.5, 0.82) + [sink]):
            self.against_wall([_slab(-w / 2, w / 2, 0, 0.02, 1.1, 1.9, OBJECTS, "mirror", self.colour(WHITES + DARKS),
                                     self.chance(0.8))])

    def desk_set(self) -> None:
        """A desk against a wall with a monitor, things on it and a chair in front."""
        w, d, h = self.uniform(1.0, 1.8), self.uniform(0.6, 0.8), self.uniform(0.72, 0.78)
        specs = self.table(w, d, h)
        if self.chance(0.7):
            specs += _moved(self.tv(self.uniform(0.45, 0.7), h + 0.1, 0.15), dx=self.uniform(-w / 4, w / 4))
            specs.append(_slab(-0.12, 0.12, 0.12, 0.3, h, h + 0.1, TV, "plain", DARKS[0]))
        specs += self.clutter(-w / 2, w / 2, 0.35, d - 0.05, h, self.integer(1, 4))
        specs += _moved(self.chair(office=self.kind == "office"), dx=self.uniform(-w / 4, w / 4), dy=d + 0.55,
                        yaw=math.pi + self.uniform(-0.4, 0.4))
        self.against_wall(specs)

    def dining_set(self, width: float, depth: float, chairs: int) -> None:
        """A table in the room with chairs around it, facing it."""
        h = self.uniform(0.72, 0.78)
        specs = _moved(self.table(width, depth, h), dy=-depth / 2)
        specs += self.clutter(-width / 2 + 0.1, width / 2 - 0.1, -depth / 2 + 0.1, depth / 2 - 0.1, h,
                              self.integer(0, 4))
        seats = [(x, side) for x in np.linspace(-width / 2, width / 2, (chairs + 1) // 2 + 2)[1:-1] for side in (-1, 1)]
        for x, side in seats[:chairs]:
            offset = depth / 2 + self.uniform(0.05, 0.35)
            # the chair's back is at its y = 0 and it faces +y: turn it to face the table
            specs += _moved(self.chair(), dx=float(x), dy=side * (offset + 0.45), yaw=(0 if side < 0 else math.pi)
                            + self.uniform(-0.25, 0.25))
        self.free_standing(specs)

    def rug(self) -> None:
        """A rug as a decal on the floor (NYUv2 labels floor mats as floor)."""
        lx, ly, _ = self.size
        w, d = self.uniform(1.2, min(3.0, lx - 0.4)), self.uniform(0.8, min(2.2, ly - 0.4))
        x0, y0 = self.uniform(0.2, lx - 0.2 - w), self.uniform(0.2, ly - 0.2 - d)
        finish = Finish("carpet", self.colour(CARPETS + FABRICS), self.seed())
        self.decals.append(Decal(FLOOR_FACE, (x0, y0), (x0 + w, y0 + d), finish))

    # -- room finishes, light and camera
    def finishes(self) -> tuple[Finish, ...]:
        paint = self.colour(WALL_PAINTS)
        walls = [Finish("paint", paint, self.seed()) for _ in range(4)]
        if self.chance(0.2):
            walls[self.integer(4)] = Finish("paint", self.colour(WALL_PAINTS), self.seed())
        if self.kind in ("kitchen", "bathroom"):
            floor = Finish("tiles", self.colour(TILES), self.seed())
        elif self.kind == "office":
            carpet = self.chance(0.7)
            floor = Finish("carpet" if carpet else "tiles", self.colour(CARPETS if carpet else TILES), self.seed())
        else:
            r = self.rng.random()
            floor = (Finish("planks", self.colour(WOODS), self.seed()) if r < 0.5 else
                     Finish("carpet", self.colour(CARPETS), self.seed()) if r < 0.85 else
                     Finish("tiles", self.colour(TILES), self.seed()))
        tiled = self.kind in ("office", "kitchen", "study") and self.chance(0.7)
        ceiling = Finish("ceiling_tiles" if tiled else "paint", self.colour(WHITES), self.seed())
        return (walls[3], walls[1], walls[0], walls[2], floor, ceiling)  # by face index: x=0, x=lx, y=0, y=ly

    def light(self) -> tuple[float, float, float]:
        lx, ly, hz = self.size
        x, y = self.uniform(0.3, 0.7) * lx, self.uniform(0.3, 0.7) * ly
        if self.chance(0.7):  # a visible light panel just above the light point
            s = self.uniform(0.3, 0.6)
            self.parts.append(Part((x, y, hz - 0.02), (s / 2, s / 2, 0.02), 0.0, OBJECTS, "lamp", (1.0, 0.97, 0.9),
                                   self.seed()))
        return x, y, hz - 0.06

    def camera(self) -> tuple[np.ndarray, np.ndarray]:
        """A handheld pose in a free spot, looking at the furniture or across the room.

        Poses whose view is blocked (more than 4 % of a coarse probe nearer than 0.7 m) or too
        close to a wall are redrawn.
        """
        lx, ly, _ = self.size
        geometry = _Geometry(self.size, tuple(self.parts))
        pose = None
        for attempt in range(60):
            if self.chance(0.6):  # near a wall, as most NYUv2 frames are taken
                w = self.integer(4)
                corner, along, length = self.wall_frame(w)
                inward = np.array([-along[1], along[0]])
                xy = corner + self.uniform(0.4, length - 0.4) * along + self.uniform(0.4, 1.2) * inward
            else:
                xy = np.array([self.uniform(0.4, lx - 0.4), self.uniform(0.4, ly - 0.4)])
            position = np.array([xy[0], xy[1], self.uniform(1.0, 1.7)])
            if not (0.3 < xy[0] < lx - 0.3 and 0.3 < xy[1] < ly - 0.3) or any(
                    (xy > b[0, :2] - 0.3).all() and (xy < b[1, :2] + 0.3).all() for b in self.occupied):
                continue
            across = not self.targets or self.chance(0.25)
            if across:  # look across the room at its far side
                target = np.array([self.uniform(0, lx), self.uniform(0, ly), self.uniform(0.6, 1.4)])
            else:  # look at a piece of furniture from nearby
                target = self.targets[self.integer(len(self.targets))]
            offset = target - position
            reach = math.hypot(offset[0], offset[1])
            if reach < 1.3 or (not across and reach > 4.5) or (across and reach < 0.5 * max(lx, ly)):
                continue
            yaw = math.atan2(offset[1], offset[0]) + float(self.rng.normal(0, 0.15))
            pitch = float(np.clip(math.atan2(offset[2], reach) + self.rng.normal(-0.03, 0.08), -0.6, 0.1))
            roll = float(np.clip(self.rng.normal(0, 0.03), -0.1, 0.1))
            pose = (position, _camera_rotation(yaw, pitch, roll))
            depth = _cast(_View(position, pose[1], *intrinsics(24, 32), 24, 32), geometry)[0]
            # a view blocked by something near, or of a bare wall, is redrawn (less picky as tries run out)
            if np.mean(depth < 0.7) <= 0.04 and np.median(depth) >= 2.0 - attempt / 40:
                break
        if pose is None:  # a crowded room: stand in the middle and look along it
            position = np.array([lx / 2, ly / 2, 1.4])
            pose = (position, _camera_rotation(0.0 if lx > ly else math.pi / 2, -0.25, 0.0))
        return pose

    def blobs(self, count: int, radius: tuple[float, float]) -> tuple[Blob, ...]:
        return tuple(Blob((self.uniform(0, 1), self.uniform(0, 1)), (self.uniform(*radius), self.uniform(*radius)),
                          self.uniform(0, math.pi), self.seed()) for _ in range(count))


def _camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (columns: x right, y down, z forward) of a camera looking along
    ``yaw`` (from the world x axis towards y), ``pitch`` up from the horizontal and rolled by ``roll``."""
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
    return np.stack([right, down, forward], axis=1)


def _split_key(split: str) -> int:
    return zlib.crc32(split.encode())


def make_scene(seed: int, split: str, index: int) -> Scene:
    """The scene of sample ``index`` of ``split``: a function of (seed, split, index) only."""
    rng = np.random.default_rng([seed, _split_key(split), index])
    layout = _Layout(rng)
    layout.furnish()
    faces = layout.finishes()
    light = layout.light()
    position, rotation = layout.camera()
    fill = None
    if layout.windows:
        corner, along, _ = layout.wall_frame(layout.windows[0])
        inward = np.array([-along[1], along[0]])
        direction = tuple(float(c) for c in np.array([inward[0], inward[1], -0.6]) / math.hypot(1, 0.6))
        fill = (direction, layout.uniform(0.1, 0.3))
    warmth = layout.uniform(0.0, 1.0)
    return Scene(
        kind=layout.kind, size=layout.size, faces=faces, decals=tuple(layout.decals), parts=tuple(layout.parts),
        camera_position=position, camera_rotation=rotation, light=light,
        light_colour=(1.0, 0.97 - 0.07 * warmth, 0.92 - 0.17 * warmth), fill=fill,
        exposure=layout.uniform(0.72, 0.9),
        depth_dropouts=layout.blobs(layout.integer(0, 4), (0.02, 0.07)),
        unlabelled=layout.blobs(layout.integer(0, 5), (0.02, 0.07)),
        noise_seed=layout.seed(),
    )


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


def plot_samples(samples: list[dict[str, np.ndarray]], path: str | Path) -> None:
    """Draw samples one per row — RGB, depth, labels, normals — with a class legend, to a PNG.

    Colours are mbmt.visual's (as in `mbmt predict` and the report). Imports matplotlib.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    from mbmt.io import atomic_path
    from mbmt.visual import DEPTH_COLORMAP, class_legend_handles, colorize_depth, colorize_normal, colorize_semantic

    height, width = samples[0]["depth"].shape
    vmax = max(float(s["depth"].max()) for s in samples)
    columns = ("RGB image", "depth (black: no measurement)", "labels (black: unlabelled)",
               "normals: (x, y, z) as RGB (black: none)")
    fig = Figure(figsize=(4 * 2.4 * width / height, 2.4 * len(samples) + 1.4), layout="constrained")
    axes = fig.subplots(len(samples), 4, squeeze=False)
    for row, sample in enumerate(samples):
        panels = (sample["image"], colorize_depth(sample["depth"], 0.0, vmax),
                  colorize_semantic(sample["semantic"]), colorize_normal(sample["normal"]))
        for ax, panel, title in zip(axes[row], panels, columns):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    scale = axes[-1, 1].inset_axes((0.05, -0.1, 0.9, 0.05))  # under the last depth panel
    fig.colorbar(ScalarMappable(Normalize(0.0, vmax), DEPTH_COLORMAP), cax=scale,
                 orientation="horizontal", label="depth (m)")
    fig.legend(handles=class_legend_handles(), loc="outside lower center", ncol=7, fontsize=9, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)

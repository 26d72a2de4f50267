"""The materials: procedural textures of the room faces and the parts (`MATERIALS`).

A texture is a function of coordinates on the surface in metres, so patterns are fixed in 3-D;
the noise is an integer hash, identical on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


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

"""Furniture built from boxes in an item frame (`_Spec` lists: tables, chairs, sofas, beds,
cabinets, shelves of books, clutter...) from the random draws of the scene being laid out, and the
colour palettes the items and the room are drawn from. mbmt.data.synthetic.layout places them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mbmt.data.synthetic.scene import BED, BOOKS, CHAIR, FURNITURE, OBJECTS, SOFA, TABLE, TV
from mbmt.data.synthetic.textures import _hsv
from mbmt.tasks import IGNORE_LABEL


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


class _Draws:
    """The random draws of one scene, all from ``self.rng`` (the scene's one generator, which the
    subclass sets): the order of the calls is what makes a scene a function of its seed."""

    rng: np.random.Generator

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


class _Furniture(_Draws):
    """Builders of items in their own frame (x across, y from the back into the room, z up)."""

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

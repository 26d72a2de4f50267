"""Drawing a scene from (seed, split, index): a room of a kind, its furniture (built in
mbmt.data.synthetic.furniture) placed without overlaps, things on the walls, then the camera, the
light and the holes (`make_scene`).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from mbmt.data.synthetic.furniture import (
    CARPETS,
    DARKS,
    FABRICS,
    LAMINATES,
    SHEETS,
    TILES,
    WALL_PAINTS,
    WHITES,
    WOODS,
    _extent,
    _Furniture,
    _moved,
    _slab,
    _Spec,
)
from mbmt.data.synthetic.render import _cast, _Geometry, _View
from mbmt.data.synthetic.scene import (
    BOOKS,
    CHAIR,
    FLOOR_FACE,
    FURNITURE,
    OBJECTS,
    PICTURE,
    TV,
    WINDOW,
    Blob,
    Decal,
    Finish,
    Part,
    Scene,
    intrinsics,
)
from mbmt.tasks import IGNORE_LABEL


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


class _Layout(_Furniture):
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

"""What a synthetic sample shows, independent of its resolution: the room, its boxes, the camera,
the light and the holes (`Scene`), with NYUv2's camera (`intrinsics`) and the class ids.

Drawn by mbmt.data.synthetic.layout, drawn at a resolution by mbmt.data.synthetic.render.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mbmt.tasks import CLASS_NAMES


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

"""Drawing a `Scene` at a resolution: ray casting, textures, lighting with a shadow map, the
Kinect's holes and image formation (`render`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mbmt.data.synthetic.scene import (
    Blob,
    CEILING,
    DEPTH_RANGE_M,
    FLOOR,
    KINECT_BASELINE_M,
    Part,
    ROOM_FACES,
    Scene,
    WALL,
    intrinsics,
)
from mbmt.data.synthetic.textures import EMISSIVE, MATERIALS, _Patch, _fbm
from mbmt.tasks import IGNORE_LABEL


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

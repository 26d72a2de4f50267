"""The synthetic scenes: every modality agrees with the 3-D scene it was rendered from.

Checks recompute geometry independently of the renderer: pixels are back-projected with the
camera intrinsics, normals are compared with finite differences of those points, and labelled
points are located on the scene's planes and boxes.
"""

from __future__ import annotations

import numpy as np
import pytest

from mbmt.cli import main
from mbmt.data import mtan_layout, synthetic
from mbmt.data.hdf5 import decode, read_attrs, validate_sample
from mbmt.tasks import CLASS_NAMES, IGNORE_LABEL

H, W = 48, 64
SAMPLES = 16  # the first 16 training scenes of seed 0 show all 13 classes
FLOOR, CEILING, WALL = (CLASS_NAMES.index(name) for name in ("floor", "ceiling", "wall"))


@pytest.fixture(scope="module")
def rendered() -> list[tuple[synthetic.Scene, dict]]:
    scenes = [synthetic.make_scene(0, "train", i) for i in range(SAMPLES)]
    return [(scene, synthetic.render(scene, H, W)) for scene in scenes]


def camera_points(depth: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points: d * ((u - cx) / fx, (v - cy) / fy, 1), the documented model."""
    fx, fy, cx, cy = synthetic.intrinsics(*depth.shape)
    v, u = np.mgrid[: depth.shape[0], : depth.shape[1]].astype(np.float64)
    return np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1)


def world_points(scene: synthetic.Scene, depth: np.ndarray) -> np.ndarray:
    return camera_points(depth) @ np.asarray(scene.camera_rotation).T + np.asarray(scene.camera_position)


def test_intrinsics_scale_nyu_camera():
    assert synthetic.intrinsics(480, 640) == pytest.approx(synthetic.NYU_INTRINSICS)
    fx, fy, cx, cy = synthetic.intrinsics(240, 320)
    # Half the resolution: pixel centres at integers, so c' = (c + 0.5) / 2 - 0.5.
    assert (fx, fy) == pytest.approx((518.8579 / 2, 519.4696 / 2))
    assert (cx, cy) == pytest.approx((325.5824 / 2 - 0.25, 253.7362 / 2 - 0.25))


def test_normals_match_the_depth_geometry(rendered):
    """On plane interiors, the normal of back-projected neighbours equals the stored normal."""
    checked = 0
    for _, sample in rendered:
        depth, normal = sample["depth"].astype(np.float64), sample["normal"].astype(np.float64)
        p = camera_points(depth)
        inverse = np.where(depth > 0, 1 / np.maximum(depth, 1e-9), 0)
        inner = (slice(1, -1), slice(1, -1))
        # A 3x3 window on one plane: all valid, one stored normal, and 1/z affine in (u, v)
        # (exactly so on a plane), which rules out parallel surfaces at different depths.
        window = np.ones((H - 2, W - 2), bool)
        for dv in (-1, 0, 1):
            for du in (-1, 0, 1):
                shifted = (slice(1 + dv, H - 1 + dv), slice(1 + du, W - 1 + du))
                window &= (depth[shifted] > 0) & np.all(normal[shifted] == normal[inner], axis=-1)
        flat_u = np.abs(inverse[1:-1, 2:] - 2 * inverse[inner] + inverse[1:-1, :-2]) < 1e-5
        flat_v = np.abs(inverse[2:, 1:-1] - 2 * inverse[inner] + inverse[:-2, 1:-1]) < 1e-5
        window &= flat_u & flat_v
        along_u = p[1:-1, 2:] - p[1:-1, :-2]
        along_v = p[2:, 1:-1] - p[:-2, 1:-1]
        numeric = -np.cross(along_u[window], along_v[window])  # u right and v down: -(u x v) faces the camera
        numeric /= np.linalg.norm(numeric, axis=-1, keepdims=True)
        cos = np.sum(numeric * normal[inner][window], axis=-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.5
        checked += window.sum()
    assert checked > 0.5 * SAMPLES * H * W  # most pixels lie inside a plane


def test_normals_are_unit_face_the_camera_and_holes_agree(rendered):
    holes = unlabelled = 0
    for _, sample in rendered:
        validate_sample(sample, H, W, "synthetic")
        depth, normal = sample["depth"], sample["normal"]
        valid = depth > 0
        np.testing.assert_array_equal(valid, np.any(normal != 0, axis=-1))  # invalid depth <=> zero normal
        np.testing.assert_allclose(np.linalg.norm(normal[valid], axis=-1), 1, atol=1e-5)
        assert (depth[valid] >= synthetic.DEPTH_RANGE_M[0]).all() and (depth[valid] <= synthetic.DEPTH_RANGE_M[1]).all()
        assert (np.sum(normal * camera_points(depth), axis=-1)[valid] < 0).all()  # n . p < 0
        floor = valid & (sample["semantic"] == FLOOR)
        assert (normal[floor][:, 1] < -0.7).all()  # up is -y in the camera frame, give or take the pitch
        holes += (~valid).sum()
        unlabelled += (sample["semantic"] == IGNORE_LABEL).sum()
    assert holes > 0 and unlabelled > 0


def test_labels_lie_on_the_surfaces_they_name(rendered):
    """Floor/ceiling/wall pixels on the room's planes; other classes on a box of that class."""
    seen = set().union(*(np.unique(sample["semantic"][sample["depth"] > 0]).tolist() for _, sample in rendered))
    assert seen >= set(range(len(CLASS_NAMES)))  # every class is checked
    tol = 2e-3  # metres: float32 depth at up to 10 m
    for scene, sample in rendered:
        lx, ly, hz = scene.size
        valid = sample["depth"] > 0
        points = world_points(scene, sample["depth"].astype(np.float64))
        normals = sample["normal"].astype(np.float64) @ np.asarray(scene.camera_rotation).T
        label = sample["semantic"]

        floor = valid & (label == FLOOR)
        np.testing.assert_allclose(points[floor][:, 2], 0, atol=tol)
        np.testing.assert_allclose(normals[floor], np.broadcast_to([0, 0, 1], normals[floor].shape), atol=1e-5)
        np.testing.assert_allclose(points[valid & (label == CEILING)][:, 2], hz, atol=tol)
        wall = points[valid & (label == WALL)]
        distance = np.min(np.abs(np.stack([wall[:, 0], wall[:, 0] - lx, wall[:, 1], wall[:, 1] - ly])), axis=0)
        assert (distance < tol).all()

        other = valid & (label >= 0) & ~np.isin(label, (FLOOR, CEILING, WALL))
        for cls in np.unique(label[other]):
            p = points[other & (label == cls)]
            on_a_box = np.zeros(len(p), bool)
            for part in scene.parts:
                if part.label == cls:
                    cos, sin = np.cos(part.yaw), np.sin(part.yaw)
                    rel = p - part.centre
                    local = np.abs(np.stack([cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1],
                                             rel[:, 2]], axis=1))
                    half = np.asarray(part.half)
                    on_a_box |= (local <= half + tol).all(axis=1) & (local >= half - tol).any(axis=1)
            assert on_a_box.all(), f"{CLASS_NAMES[cls]} pixels at {p[~on_a_box][:3]} lie on no {CLASS_NAMES[cls]} box"


def test_projector_shadow_width_follows_the_baseline():
    """A 1 m surface in front of a 3 m one: disparity jumps by 0.075 * fx * (1 - 1/3) = 15 px at
    fx = 300, so the 14 background pixels left of the edge are shadowed, nothing else."""
    depth = np.full((2, 60), 3.0)
    depth[:, 40:] = 1.0
    shadow = synthetic._projector_shadow(depth, fx=300.0)
    expected = np.zeros(60, bool)
    expected[40 - 14:40] = True
    np.testing.assert_array_equal(shadow, np.broadcast_to(expected, shadow.shape))


def test_generation_is_a_function_of_seed_split_and_index():
    """Sample i repeats exactly whatever the count or the number of worker processes."""
    first = list(synthetic.generate(2, 32, 32, 7, split="train"))
    longer = list(synthetic.generate(3, 32, 32, 7, split="train"))
    for a, b in zip(first, longer):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    parallel = list(synthetic.generate(3, 32, 32, 7, split="train", workers=2))
    for a, b in zip(longer, parallel):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    other_split = next(synthetic.generate(1, 32, 32, 7, split="test"))
    other_seed = next(synthetic.generate(1, 32, 32, 8, split="train"))
    assert not np.array_equal(first[0]["depth"], other_split["depth"])
    assert not np.array_equal(first[0]["depth"], other_seed["depth"])


def test_synth_writes_a_readable_hdf5_split(project):
    assert main(["synth", "--out", "synthetic/test.h5", "--split", "test", "--count", "2"]) == 0
    attrs = read_attrs(project / "synthetic" / "test.h5")
    assert (attrs["count"], attrs["height"], attrs["width"], attrs["split"]) == (2, 64, 64, "test")
    assert set(attrs["modalities"].values()) == {"rendered"} and attrs["seed"] == 0
    import h5py

    expected = list(synthetic.generate(2, 64, 64, 0, split="test"))
    with h5py.File(project / "synthetic" / "test.h5", "r") as f:
        stored = decode({name: f[name][1] for name in ("image", "semantic", "depth", "normal")})
    np.testing.assert_array_equal(stored["semantic"], expected[1]["semantic"])
    np.testing.assert_allclose(stored["depth"][0], expected[1]["depth"], rtol=2 ** -11)


def test_synth_writes_mtan_layout_and_a_figure(project):
    assert main(["synth", "--out", "mtan", "--split", "test", "--count", "2", "--height", "32",
                 "--width", "32", "--seed", "3", "--format", "mtan", "--workers", "1",
                 "--figure", "figure.png", "--figure-samples", "2"]) == 0
    split_dir = project / "mtan" / "val"
    assert mtan_layout.sample_count(split_dir) == 2
    read = mtan_layout.read_sample(split_dir, 1)
    expected = list(synthetic.generate(2, 32, 32, 3, split="test"))[1]
    for name in expected:
        np.testing.assert_array_equal(read[name], expected[name])
    from PIL import Image

    with Image.open(project / "figure.png") as figure:
        assert figure.format == "PNG" and figure.width >= 400


def test_synth_rejects_an_empty_split(project, capsys):
    assert main(["synth", "--out", "x.h5", "--split", "train", "--count", "0"]) == 2
    assert "--count 0" in capsys.readouterr().err

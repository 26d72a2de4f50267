"""`mbmt predict` and the colour maps it shares with the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mbmt import cli
from mbmt.config import load_params
from mbmt.models import create_model, save_model
from mbmt.predict import (
    SEMANTIC_PALETTE,
    colorize_depth,
    colorize_normal,
    colorize_semantic,
    find_images,
    predict,
)
from mbmt.tasks import CLASS_NAMES

TRAINED_SIZE = [64, 96]  # (height, width) recorded in the model file; not the images' 480 x 640


def test_colorize_semantic_uses_the_palette_and_blacks_out_unlabelled():
    ids = np.array([[0, 12], [-1, 4]])
    rgb = colorize_semantic(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert (rgb[0, 0] == SEMANTIC_PALETTE[0]).all() and (rgb[0, 1] == SEMANTIC_PALETTE[12]).all()
    assert (rgb[1, 0] == 0).all() and (rgb[1, 1] == SEMANTIC_PALETTE[4]).all()
    assert len({tuple(c) for c in SEMANTIC_PALETTE}) == len(CLASS_NAMES)  # one distinct colour per class
    assert not any((c == 0).all() for c in SEMANTIC_PALETTE)  # none looks unlabelled
    with pytest.raises(ValueError, match="13"):
        colorize_semantic(np.array([[13]]))


def test_colorize_depth_maps_the_range_and_blacks_out_missing():
    import matplotlib

    rgb = colorize_depth(np.array([[2.0, 6.0, 10.0, 0.0]]), vmin=2.0, vmax=6.0)
    viridis = matplotlib.colormaps["viridis"]
    assert (rgb[0, 0] == np.array(viridis(0.0, bytes=True)[:3])).all()
    assert (rgb[0, 1] == np.array(viridis(1.0, bytes=True)[:3])).all()
    assert (rgb[0, 2] == rgb[0, 1]).all()  # clipped to vmax
    assert (rgb[0, 3] == 0).all()  # no measurement


def test_colorize_normal_encodes_xyz_as_rgb():
    rgb = colorize_normal(np.array([[[0.0, 0.0, 1.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]))
    assert rgb.tolist() == [[[128, 128, 255], [0, 255, 128], [0, 0, 0]]]


@pytest.fixture
def mtnet_file(project):
    params = load_params()
    torch.manual_seed(0)
    model = create_model("mtnet", params, load_init=False)
    save_model(project / "mtnet.pt", model, name="mtnet", params=params, extra={"input_size": TRAINED_SIZE})
    return project / "mtnet.pt"


def test_predict_returns_host_arrays_per_task(mtnet_file):
    from mbmt.models import load_model

    model, _ = load_model(mtnet_file)
    result = predict(model, torch.rand(2, 3, 32, 64))
    assert result["semantic"].shape == (2, 32, 64) and result["semantic"].dtype == np.int64
    assert result["depth"].shape == (2, 32, 64) and (result["depth"] > 0).all()
    assert result["normal"].shape == (2, 32, 64, 3)
    np.testing.assert_allclose(np.linalg.norm(result["normal"], axis=-1), 1.0, atol=1e-5)


def test_predict_real_images_writes_pngs_and_arrays(mtnet_file, real_images, project, capsys):
    out = project / "predictions"
    # A folder contributes its RGB frames only, not the 16-bit depth or 8-bit label PNGs beside them.
    assert [p.name for p in find_images([real_images])] == [f"{i}_rgb.png" for i in range(10)]
    inputs = [str(real_images / "3_rgb.png"), str(real_images / "7_rgb.png")]
    assert cli.main(["predict", "--checkpoint", str(mtnet_file), *inputs, "--out", str(out), "--npy"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}_{task}.{ext}" for stem in ("3_rgb", "7_rgb")
                           for task in ("semantic", "depth", "normal") for ext in ("png", "npy"))
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            assert image.mode in ("RGB", "RGBA") and min(image.size) >= 200  # a figure, with legend or colour bar
    semantic, depth, normal = (np.load(out / f"3_rgb_{task}.npy") for task in ("semantic", "depth", "normal"))
    assert semantic.shape == tuple(TRAINED_SIZE) and semantic.min() >= 0 and semantic.max() < len(CLASS_NAMES)
    assert depth.shape == tuple(TRAINED_SIZE) and (depth > 0).all()
    assert normal.shape == (*TRAINED_SIZE, 3)


def test_predict_errors_name_the_input(mtnet_file, project, capsys):
    assert cli.main(["predict", "--checkpoint", str(mtnet_file), "missing.png", "--out", "out"]) == 2
    assert "missing.png: no such image file or folder" in capsys.readouterr().err
    assert cli.main(["predict", "--checkpoint", "nowhere.pt", str(mtnet_file), "--out", "out"]) == 2
    assert "nowhere.pt: model file not found" in capsys.readouterr().err

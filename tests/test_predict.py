"""`mbmt predict` and the colour maps it shares with the report."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import subprocesses
import torch
from PIL import Image

from mbmt import cli
from mbmt.config import load_params, model_settings
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


def test_predicted_depth_is_clamped_not_drawn_missing(monkeypatch, tmp_path):
    import matplotlib

    from mbmt import predict as predict_module

    near = np.array(matplotlib.colormaps["viridis"](0.0, bytes=True)[:3])
    rgb = colorize_depth(np.array([[-0.5, 0.0, np.nan]]), vmin=0.0, vmax=5.0, predicted=True)
    assert (rgb[0, 0] == near).all() and (rgb[0, 1] == near).all()  # MTAN's depth can be <= 0
    assert (rgb[0, 2] == 0).all()  # not a number: nothing to draw
    # `mbmt predict` draws its depth PNGs that way.
    drawn = []
    figure = predict_module._figure
    monkeypatch.setattr(predict_module, "_figure", lambda rgb, title: drawn.append(rgb) or figure(rgb, title))
    predict_module.write_depth_png(np.array([[-0.5, 0.0], [2.0, 10.0]]), tmp_path / "depth.png", "depth")
    assert (drawn[0][0, 0] == near).all() and (drawn[0][0, 1] == near).all()
    assert not (drawn[0] == 0).all(axis=-1).any()


def test_colorize_normal_encodes_xyz_as_rgb():
    rgb = colorize_normal(np.array([[[0.0, 0.0, 1.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]))
    assert rgb.tolist() == [[[128, 128, 255], [0, 255, 128], [0, 0, 0]]]


@pytest.fixture
def mtnet_file(project):
    params = load_params()
    torch.manual_seed(0)
    model = create_model(model_settings(params, "mtnet"), load_init=False)
    save_model(project / "mtnet.pt", model, extra={"input_size": TRAINED_SIZE}, settings=model_settings(params, "mtnet"))
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


def write_inputs(folder) -> dict[str, str]:
    """Image files ``mbmt predict`` must refuse, by what is wrong with them."""
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "photo.png")
    Image.fromarray(np.full((24, 32), 40000, np.uint16)).save(folder / "depth16.png")  # mode I;16
    Image.fromarray(np.full((24, 32), 2.5, np.float32)).save(folder / "depth32.tif")  # mode F
    whole = (folder / "photo.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (folder / "notes.png").write_text("not an image")
    return {"missing.png": "missing.png: no such image file or folder",
            "depth16.png": "depth16.png: a 16-bit single-channel image (PIL mode I;16), such as a depth map",
            "depth32.tif": "depth32.tif: a 32-bit float single-channel image (PIL mode F)",
            "truncated.png": "truncated.png: not a readable image",
            "notes.png": "notes.png: not a readable image"}


def test_unusable_inputs_fail_before_torch_is_imported(project):
    """Checked before the model is built: each error in a process that never imported torch or timm."""
    (project / "model.pt").write_bytes(b"never read")
    cases = write_inputs(project)
    script = textwrap.dedent(f"""
        import sys
        from mbmt import cli
        codes = [cli.main(["predict", "--checkpoint", "model.pt", "photo.png", name, "--out", "out"])
                 for name in {sorted(cases)!r}]
        print(codes, sorted(m for m in ("torch", "timm") if m in sys.modules))
    """)
    run = subprocesses.run([sys.executable, "-c", script], timeout=120, cwd=project)
    assert run.stdout.strip() == f"{[2] * len(cases)} []", run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("mbmt predict: error:")]
    assert len(errors) == len(cases)
    for (name, message), line in zip(sorted(cases.items()), errors):
        assert message in line
    assert not (project / "out").exists()


def test_16_bit_grayscale_named_alone_is_refused(mtnet_file, project, capsys, monkeypatch):
    write_inputs(project)
    with monkeypatch.context() as patch:
        patch.setattr("mbmt.models.load_model", lambda *_, **__: pytest.fail("the model was loaded"))
        assert cli.main(["predict", "--checkpoint", str(mtnet_file), "depth16.png", "--out", "out16"]) == 2
    assert "mbmt predict reads 8-bit colour or grayscale images" in capsys.readouterr().err
    assert not (project / "out16").exists()
    Image.fromarray(np.full((24, 32), 100, np.uint8)).save(project / "gray8.png")  # 8-bit grayscale reads as gray RGB
    assert cli.main(["predict", "--checkpoint", str(mtnet_file), "gray8.png", "--out", "out", "--npy"]) == 0
    assert np.load(project / "out" / "gray8_depth.npy").shape == tuple(TRAINED_SIZE)


def test_predict_errors_name_the_input(mtnet_file, project, capsys):
    assert cli.main(["predict", "--checkpoint", str(mtnet_file), "missing.png", "--out", "out"]) == 2
    assert "missing.png: no such image file or folder" in capsys.readouterr().err
    assert cli.main(["predict", "--checkpoint", "nowhere.pt", str(mtnet_file), "--out", "out"]) == 2
    assert "nowhere.pt: model file not found" in capsys.readouterr().err

"""Models: output contracts, backbones by name, freezing, ST-encoder loading, model files, counts."""

from __future__ import annotations

import copy

import pytest
import torch

from mbmt.config import load_params, model_settings
from mbmt.errors import MbmtError
from mbmt.models import count_parameters, create_model, load_model, save_model
from mbmt.models.base import OUTPUT_ACTIVATIONS, resize_like, unit_normal
from mbmt.models.efficientps import TwoWayFPN
from mbmt.models.encoder import Encoder, backbone_layout
from mbmt.models.mtan import MTAN_ACTIVATIONS
from mbmt.paper import PARAMETERS
from mbmt.paths import model_file
from mbmt.tasks import TASK_CHANNELS

from conftest import REPO

SIZE = 64


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def with_model(params: dict, name: str, **changes) -> dict:
    """``params`` with ``changes`` merged into model ``name``'s entry."""
    params = copy.deepcopy(params)
    params["models"][name].update(changes)
    return params


def step(model: torch.nn.Module, image: torch.Tensor, lr: float = 1e-2) -> None:
    """One Adam step on a loss that involves every output."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    outputs = model(image)
    loss = sum(((o - 0.5) ** 2).mean() for o in outputs.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["st_de", "mtnet", "mbmt_partial", "mtan"])
def test_outputs_follow_the_task_contract(tiny_params, image, name):
    model = create_model(model_settings(tiny_params, name), load_init=False).eval()
    with torch.no_grad():
        outputs = model(image)
    assert set(outputs) == set(model.tasks)
    for task, out in outputs.items():
        assert out.shape == (2, TASK_CHANNELS[task], SIZE, SIZE)
        assert torch.isfinite(out).all()
    if "depth" in outputs and name != "mtan":  # MTAN's depth is a raw convolution, as in MTAN
        assert (outputs["depth"] > 0).all()
    if "normal" in outputs:
        torch.testing.assert_close(outputs["normal"].norm(dim=1), torch.ones(2, SIZE, SIZE))


def prediction_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Each task's last layers (EfficientPS heads' ``predict``, MTAN's ``predict[task]``)."""
    if hasattr(model, "heads"):
        return {task: head.predict for task, head in model.heads.items()}
    return dict(model.predict.items())


@pytest.mark.parametrize("name", ["st_ss", "mtnet", "mbmt_partial", "mtan"])
def test_prediction_layers_run_in_float32_under_bf16_autocast(tiny_params, image, name):
    model = create_model(model_settings(tiny_params, name), load_init=False).eval()
    activations = MTAN_ACTIVATIONS if name == "mtan" else OUTPUT_ACTIVATIONS
    features = {}
    for task, layers in prediction_layers(model).items():
        layers.register_forward_pre_hook(lambda _, args, task=task: features.__setitem__(task, args[0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(image)
    for task, layers in prediction_layers(model).items():
        assert features[task].dtype == torch.bfloat16  # the body did run under autocast
        assert outputs[task].dtype == torch.float32
        with torch.no_grad():  # the same layers on the same features, by hand, without autocast
            x = features[task].float()
            for layer in layers:
                x = layer(x)
            expected = activations[task](resize_like(x, image.shape[-2:]))
        # bf16 layers would be off by up to 2^-8 relative (bf16's rounding: depth in steps of ~0.4 %)
        torch.testing.assert_close(outputs[task], expected, rtol=1e-5, atol=1e-6)


def test_unit_normals_survive_an_all_zero_prediction():
    raw = torch.randn(1, 3, 2, 2)
    raw[0, :, 1, 1] = 0.0
    raw.requires_grad_(True)
    normal = unit_normal(raw)
    torch.testing.assert_close(normal.norm(dim=1), torch.ones(1, 2, 2))
    torch.testing.assert_close(normal[0, :, 0, 0], raw[0, :, 0, 0] / raw[0, :, 0, 0].norm())
    normal.sum().backward()
    assert torch.isfinite(raw.grad).all() and not raw.grad[0, :, 1, 1].any()


def test_the_seed_alone_decides_the_initial_weights(tiny_params):
    backbone_layout.cache_clear()  # the first build of a backbone probes its layout; later ones use the cache
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        weights.append(create_model(model_settings(tiny_params, "mtnet"), load_init=False).state_dict())
    assert tensors_equal(*weights)


def test_single_task_nets_have_one_head(tiny_params):
    for name, task in [("st_ss", "semantic"), ("st_de", "depth"), ("st_snp", "normal")]:
        assert create_model(model_settings(tiny_params, name), load_init=False).tasks == (task,)
    assert create_model(model_settings(tiny_params, "mtnet"), load_init=False).tasks == ("semantic", "depth", "normal")


def test_two_way_fpn_mixes_every_level_both_ways():
    torch.manual_seed(0)
    fpn = TwoWayFPN([3, 5, 7, 9], 4, norm="batchnorm").eval()
    features = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([3, 5, 7, 9])]
    base = fpn(features)
    assert [tuple(p.shape) for p in base] == [(1, 4, 32 // 2**i, 32 // 2**i) for i in range(4)]
    finest, coarsest = [f.clone() for f in features], [f.clone() for f in features]
    finest[0] += 1.0  # reaches stride 32 only through the bottom-up path
    coarsest[3] += 1.0  # reaches stride 4 only through the top-down path
    assert not torch.allclose(fpn(finest)[3], base[3])
    assert not torch.allclose(fpn(coarsest)[0], base[0])


def test_any_timm_backbone_plugs_in(tiny_params, image):
    convnext = Encoder("test_convnext", head_conv=True)  # 4 levels, no head conv to use
    assert convnext.channels == (24, 32, 48, 64) and not convnext.uses_head_conv
    effnet = Encoder("test_efficientnet", head_conv=True)
    assert effnet.uses_head_conv and effnet.channels[-1] == effnet.head[0].out_channels != 64
    assert [f.shape[-1] for f in effnet(image)] == [SIZE // s for s in (4, 8, 16, 32)]

    params = with_model(tiny_params, "st_de", backbone="test_convnext")
    params = with_model(params, "mbmt_full_scratch", backbones=["test_convnext", "test_efficientnet"],
                        extra_backbone="test_convnext")
    for name in ("st_de", "mbmt_full_scratch"):  # MBMT fuses backbones of different widths
        outputs = create_model(model_settings(params, name), load_init=False).eval()(image)
        assert outputs["depth"].shape == (2, 1, SIZE, SIZE)


def test_backbone_without_the_needed_strides_is_a_clear_error():
    with pytest.raises(MbmtError, match=r"strides \[16, 16"):
        Encoder("test_vit", head_conv=False)
    with pytest.raises(MbmtError, match="no_such_net"):
        Encoder("no_such_net", head_conv=False)


def test_partial_mbmt_keeps_encoders_and_their_batchnorm_statistics(tiny_params, image):
    model = create_model(model_settings(tiny_params, "mbmt_partial"), load_init=False)
    backbones = model.encoder.backbones
    frozen = copy.deepcopy(backbones.state_dict())  # weights and BN running statistics
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    fpn_stats = model.fpn.outputs[0][1][1].running_mean.clone()

    step(model, image)

    assert not any(m.training for m in backbones.modules())  # eval mode survived model.train()
    assert model.fpn.training
    assert tensors_equal(backbones.state_dict(), frozen)
    assert not any(p.requires_grad for p in backbones.parameters())
    assert all(not torch.equal(p, trainable[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert not torch.equal(model.fpn.outputs[0][1][1].running_mean, fpn_stats)
    counts = count_parameters(model)
    assert counts["total"] - counts["trainable"] == sum(p.numel() for p in backbones.parameters())


def test_full_mbmt_trains_everything(tiny_params, image):
    model = create_model(model_settings(tiny_params, "mbmt_full_pretrained"), load_init=False)
    assert model.encoder.extra is not None
    counts = count_parameters(model)
    assert counts["trainable"] == counts["total"]
    before = copy.deepcopy(model.encoder.state_dict())
    step(model, image)
    after = model.encoder.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert all(any(k.startswith(f"{prefix}.") for k in changed) for prefix in ("backbones.0", "backbones.2", "extra"))


def save_st_models(params: dict, seed: int = 0) -> dict[str, torch.nn.Module]:
    models = {}
    for name in ("st_ss", "st_de", "st_snp"):
        models[name] = create_model(model_settings(params, name), load_init=False)
        save_model(model_file(name, seed), models[name], settings=model_settings(params, name))
    return models


def test_mbmt_encoders_start_from_the_st_models_of_their_seed(project, tiny_params):
    st_models = {seed: save_st_models(tiny_params, seed) for seed in (0, 1)}
    for seed in (0, 1):
        model = create_model(model_settings(tiny_params, "mbmt_partial"), seed=seed)
        for encoder, source in zip(model.encoder.backbones, ("st_ss", "st_de", "st_snp")):
            assert tensors_equal(encoder.state_dict(), st_models[seed][source].encoder.state_dict())
            assert not tensors_equal(encoder.state_dict(), st_models[1 - seed][source].encoder.state_dict())
        assert not tensors_equal(model.encoder.backbones[0].state_dict(), model.encoder.backbones[1].state_dict())


def test_mbmt_without_st_models_is_a_clear_error(project, tiny_params):
    save_st_models(tiny_params, seed=1)
    with pytest.raises(MbmtError, match=r"models/st_ss/seed0/model.pt not found; train st_ss first "
                                        r"\(mbmt train st_ss --seed 0\)"):
        create_model(model_settings(tiny_params, "mbmt_partial"), seed=0)
    create_model(model_settings(tiny_params, "mbmt_partial"), load_init=False)  # counting needs no ST model


def test_mbmt_with_a_mismatched_st_model_is_a_clear_error(project, tiny_params):
    save_st_models(tiny_params)
    other = with_model(tiny_params, "st_de", backbone="test_convnext")
    model = model_settings(other, "st_de")
    save_model(model_file("st_de", 0), create_model(model, load_init=False), settings=model)
    with pytest.raises(MbmtError, match=r"init_from: models/st_de/seed0/model.pt holds a 'st' model with backbones \['test_convnext'\]"):
        create_model(model_settings(tiny_params, "mbmt_partial"), seed=0)
    model = model_settings(tiny_params, "mtan")
    save_model(model_file("st_de", 0), create_model(model, load_init=False), settings=model)
    with pytest.raises(MbmtError, match="holds a 'mtan' model"):
        create_model(model_settings(tiny_params, "mbmt_partial"), seed=0)


@pytest.mark.parametrize("name", ["st_de", "mbmt_partial", "mtan"])
def test_model_file_round_trip(tmp_path, monkeypatch, tiny_params, image, name):
    model = create_model(model_settings(tiny_params, name), load_init=False).train()
    with torch.no_grad():
        model(image)  # BN statistics away from their initial values
    model.eval()
    path = tmp_path / "model.pt"
    save_model(path, model, extra={"epochs": 2}, settings=model_settings(tiny_params, name))
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the file alone defines the model
    loaded, meta = load_model(path)
    assert meta["name"] == name and meta["model"] == tiny_params["models"][name]
    assert meta["decoder"] == tiny_params["decoder"] and meta["extra"] == {"epochs": 2}
    assert tuple(meta["tasks"]) == model.tasks == loaded.tasks
    assert count_parameters(loaded) == count_parameters(model)  # freezing is rebuilt too
    with torch.no_grad():
        expected, actual = model(image), loaded.eval()(image)
    assert all(torch.equal(expected[t], actual[t]) for t in model.tasks)


def test_load_model_rejects_other_files(tmp_path, tiny_params):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(MbmtError, match="not an mbmt model file"):
        load_model(tmp_path / "other.pt")
    path = tmp_path / "old.pt"
    model = model_settings(tiny_params, "st_ss")
    save_model(path, create_model(model, load_init=False), settings=model)
    record = torch.load(path, weights_only=True)
    torch.save({**record, "version": 1}, path)  # as written before the prediction layers moved
    with pytest.raises(MbmtError, match=r"version 1, this code reads 2; retrain it with `mbmt train st_ss`"):
        load_model(path)


def test_weights_that_do_not_fit_are_one_line_naming_the_file_and_the_fix(tmp_path, tiny_params):
    """A model file whose weights no longer fit what the code builds (e.g. after an architecture edit)."""
    path = tmp_path / "model.pt"
    model = model_settings(tiny_params, "st_de")
    save_model(path, create_model(model, load_init=False), settings=model)
    record = torch.load(path, weights_only=True)
    key = next(k for k in record["state_dict"] if k.endswith("predict.0.weight"))
    record["state_dict"][key] = torch.zeros(1, 1, 1, 1)
    record["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(record, path)
    with pytest.raises(MbmtError) as error:
        load_model(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: the weights do not fit")
    assert f"1 unexpected (e.g. extra.weight); 1 of another shape (e.g. {key} is (1, 1, 1, 1)" in message
    assert message.endswith("retrain it with `mbmt train st_de`")


def test_groupnorm_decoder_has_the_same_parameter_count(tiny_params, image):
    params = copy.deepcopy(tiny_params)
    params["decoder"]["norm"] = "groupnorm"
    model = create_model(model_settings(params, "st_snp"), load_init=False)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert count_parameters(model) == count_parameters(create_model(model_settings(tiny_params, "st_snp"), load_init=False))
    assert model.eval()(image[:1])["normal"].shape == (1, 3, SIZE, SIZE)  # per-sample norm: batch of 1


# --- Parameter counts at the paper's size, against the layer arithmetic of docs/architecture.md ---

def conv_norm(c_in: int, c_out: int, k: int = 1) -> int:
    return c_in * c_out * k * k + 2 * c_out  # no bias; norm weight and bias


def separable(c_in: int, c_out: int) -> int:
    return conv_norm(1, c_in, 3) + conv_norm(c_in, c_out)  # depthwise 3x3 + pointwise 1x1


B2_FEATURES, B2_CHANNELS = 7_202_562, (24, 48, 120, 1408)  # timm features_only; 1408 after conv_head
B5_FEATURES, B5_CHANNELS = 27_288_112, (40, 64, 176, 2048)
B2_HEAD_CONV, B5_HEAD_CONV = conv_norm(352, 1408), conv_norm(512, 2048)
FPN, HEAD = 256, 128


def fpn(channels) -> int:
    return sum(2 * conv_norm(c, FPN) for c in channels) + 4 * separable(FPN, FPN)


def head(task: str) -> int:
    context = 5 * separable(FPN, FPN) + conv_norm(5 * FPN, HEAD)
    detail = separable(FPN, HEAD) + separable(HEAD, HEAD)
    correction = 2 * separable(HEAD, HEAD)
    out = TASK_CHANNELS[task]
    predict = 4 * HEAD * out + out if task == "semantic" else (4 * HEAD * 9 * FPN + FPN) + (FPN * out + out)
    return 2 * context + 2 * detail + 2 * correction + predict


def test_paper_size_counts_match_the_layer_arithmetic():
    params = load_params([REPO / "params.yaml"])
    b2 = B2_FEATURES + B2_HEAD_CONV
    counts = {name: count_parameters(create_model(model_settings(params, name), load_init=False))
              for name in ("st_ss", "st_de", "st_snp", "mtnet", "mbmt_partial")}
    for name, task in [("st_ss", "semantic"), ("st_de", "depth"), ("st_snp", "normal")]:
        assert counts[name]["total"] == b2 + fpn(B2_CHANNELS) + head(task) == counts[name]["trainable"]
    heads = head("semantic") + head("depth") + head("normal")
    assert counts["mtnet"]["total"] == B5_FEATURES + B5_HEAD_CONV + fpn(B5_CHANNELS) + heads
    fusion = 3 * sum(conv_norm(c, FPN) for c in B2_CHANNELS) + 4 * conv_norm(3 * FPN, FPN)
    assert counts["mbmt_partial"] == {"trainable": fusion + fpn([FPN] * 4) + heads, "total": fusion + fpn([FPN] * 4) + heads + 3 * b2}
    # The paper's single-task nets differ by exactly these amounts, which fixed the prediction layers.
    assert counts["st_de"]["total"] - counts["st_ss"]["total"] == PARAMETERS["st_de"]["total"] - PARAMETERS["st_ss"]["total"]
    assert counts["st_snp"]["total"] - counts["st_de"]["total"] == PARAMETERS["st_snp"]["total"] - PARAMETERS["st_de"]["total"]


def test_mtan_count_is_the_papers_without_mtans_uncertainty_weights():
    params = load_params([REPO / "params.yaml"])
    counts = count_parameters(create_model(model_settings(params, "mtan"), load_init=False))
    # MTAN's SegNet also holds `logsigma` (3 task-uncertainty weights, unused by DWA), counted in the paper.
    assert counts["total"] == counts["trainable"] == PARAMETERS["mtan"]["total"] - 3 == 44_229_073


def test_load_weights_explains_a_mismatch_in_one_line_through_the_callers_error():
    """mbmt.models.base.load_weights: the one loader of model files, ST encoders and checkpoints."""
    from mbmt.models.base import load_weights

    module = torch.nn.Linear(3, 2)
    load_weights(module, {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, MbmtError)
    assert float(module.weight.detach().sum()) == 6.0
    with pytest.raises(MbmtError, match=r"^file\.pt: 1 missing \(e\.g\. bias\); 1 of another shape "
                                        r"\(e\.g\. weight is \(3, 3\) in the file, \(2, 3\) in the model\); fix it$"):
        load_weights(module, {"weight": torch.ones(3, 3)}, lambda detail: MbmtError(f"file.pt: {detail}; fix it"))

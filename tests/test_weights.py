"""The weights stage (mbmt.models.pretrained): ImageNet weights from the Hugging Face Hub (a local
stand-in through its endpoint), its cache or a local file, checked, versioned under data/weights/,
and the only weights a training starts from. Every failure gives one error and writes nothing."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch
from hub_server import HubServer, timm_weights

from mbmt.config import model_params, model_settings
from mbmt.models import create_model
from mbmt.models.pretrained import WeightsError, fetch_weights
from mbmt.paths import weights_file, weights_record

BACKBONE = "test_efficientnet"
REPO_ID = "timm/test_efficientnet.r160_in1k"  # timm's default tag of the backbone


@pytest.fixture(scope="module")
def served_bytes() -> bytes:
    return timm_weights(BACKBONE, seed=1)


def with_pretrained(params: dict, name: str) -> dict:
    params = copy.deepcopy(params)
    params["models"][name]["pretrained"] = True
    return params


def downloads(hub: HubServer) -> list[str]:
    """The file downloads the Hub answered (huggingface_hub also asks other /api/ routes)."""
    return [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]


def nothing_written() -> bool:
    return not weights_file(BACKBONE).exists() and not weights_record(BACKBONE).exists()


def test_weights_come_from_the_hub_verified_and_recorded(project, hub_env, served_bytes, tiny_params):
    with HubServer(repos={REPO_ID: {"model.safetensors": served_bytes}}) as hub:
        hub_env(hub.url)
        record = fetch_weights(BACKBONE, {})
        assert weights_file(BACKBONE).read_bytes() == served_bytes  # the Hub's bytes, not a re-save
        assert json.loads(weights_record(BACKBONE).read_text()) == record
        assert record["source"] == "hub" and (record["timm_model"], record["timm_tag"]) == (BACKBONE, "r160_in1k")
        assert record["sha256"] == hashlib.sha256(served_bytes).hexdigest() == record["source_sha256"]
        assert (record["hf_hub_id"], record["revision"], record["bytes"]) == (REPO_ID, hub.commit, len(served_bytes))
        assert len(downloads(hub)) == 1
        # A second time the Hub's cache answers: no second download.
        fetch_weights(BACKBONE, {})
        assert len(downloads(hub)) == 1
    # The training starts from exactly these weights, offline.
    import safetensors.torch

    reference = safetensors.torch.load(served_bytes)
    encoder = create_model(model_settings(with_pretrained(tiny_params, "st_ss"), "st_ss")).encoder
    torch.testing.assert_close(encoder.body.conv_stem.weight, reference["conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(encoder.head[0].weight, reference["conv_head.weight"], rtol=0, atol=0)


def test_timms_second_choice_of_file_is_taken_and_saved_as_safetensors(project, hub_env):
    """A repository without model.safetensors: timm's next choice, pytorch_model.bin (a torch pickle)."""
    import io

    import timm

    state = timm.create_model(BACKBONE).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with HubServer(repos={REPO_ID: {"pytorch_model.bin": buffer.getvalue()}}) as hub:
        hub_env(hub.url)
        record = fetch_weights(BACKBONE, {})
    assert (record["filename"], record["tensors"]) == ("pytorch_model.bin", len(state))
    import safetensors.torch

    written = safetensors.torch.load_file(weights_file(BACKBONE))
    assert written.keys() == state.keys() and all(torch.equal(written[k], state[k]) for k in state)


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_a_cached_second_choice_is_taken_when_the_hub_cannot_be_asked(project, hub_env, monkeypatch, offline):
    """Offline, or the Hub unreachable: model.safetensors not in the cache must not end the Hub
    source; timm's next choice, pytorch_model.bin, an earlier run cached, gives the weights."""
    import io

    import timm
    from huggingface_hub import constants

    buffer = io.BytesIO()
    torch.save(timm.create_model(BACKBONE).state_dict(), buffer)
    with HubServer(repos={REPO_ID: {"pytorch_model.bin": buffer.getvalue()}}) as hub:
        hub_env(hub.url)
        first = fetch_weights(BACKBONE, {})
    weights_file(BACKBONE).unlink()
    weights_record(BACKBONE).unlink()
    hub_env("http://127.0.0.1:9")  # nothing answers there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    record = fetch_weights(BACKBONE, {})
    assert (record["source"], record["filename"], record["sha256"]) == ("hub", "pytorch_model.bin", first["sha256"])


def test_a_local_file_in_params_comes_first(project, hub_env, tmp_path):
    import timm

    reference = timm.create_model(BACKBONE).state_dict()
    torch.save({"state_dict": reference}, tmp_path / "weights.pth")  # timm's loader unwraps "state_dict"
    record = fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "weights.pth")})
    assert record["source"] == "backbone_weights" and record["path"] == str(tmp_path / "weights.pth")
    with pytest.raises(WeightsError, match=r"params backbone_weights.test_efficientnet: .*absent.pth is not a file"):
        fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "absent.pth")})


def test_offline_without_a_cached_copy_names_what_was_tried_and_the_ways_out(project, hub_env, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as error:
        fetch_weights(BACKBONE, {})
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("no ImageNet weights for backbone 'test_efficientnet' (timm test_efficientnet.r160_in1k): ")
    assert "offline (HF_HUB_OFFLINE is set) and model.safetensors is not in the Hub cache" in message
    assert "timm's older cache: the config has no URL" in message
    assert "set params backbone_weights.test_efficientnet to it" in message and "pretrained: false" in message
    assert nothing_written()


def test_offline_with_a_cached_copy_needs_no_network(project, hub_env, served_bytes, monkeypatch):
    from huggingface_hub import constants

    with HubServer(repos={REPO_ID: {"model.safetensors": served_bytes}}) as hub:
        hub_env(hub.url)
        fetch_weights(BACKBONE, {})
    weights_file(BACKBONE).unlink()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fetch_weights(BACKBONE, {})["sha256"] == hashlib.sha256(served_bytes).hexdigest()


def test_a_repository_or_file_missing_on_the_hub(project, hub_env, served_bytes):
    with HubServer(repos={}) as hub:
        hub_env(hub.url)
        with pytest.raises(WeightsError, match=r"repository timm/test_efficientnet.r160_in1k\): model.safetensors: "):
            fetch_weights(BACKBONE, {})
    with HubServer(repos={REPO_ID: {"README.md": b"no weights here"}}) as hub:
        hub_env(hub.url)
        with pytest.raises(WeightsError, match=r"r160_in1k\): no model.safetensors, no pytorch_model.bin;"):
            fetch_weights(BACKBONE, {})
    assert nothing_written()


def test_a_checksum_mismatch_is_refused_and_not_kept(project, hub_env, served_bytes):
    with HubServer(repos={REPO_ID: {"model.safetensors": served_bytes}}, announce={"model.safetensors": "0" * 64}) as hub:
        hub_env(hub.url)
        with pytest.raises(WeightsError, match="checksum mismatch .*the file was removed from the cache"):
            fetch_weights(BACKBONE, {})
        assert nothing_written()
        hub.announce.clear()  # the next try downloads it again, and it fits
        fetch_weights(BACKBONE, {})
    assert len(downloads(hub)) == 2


def test_a_cut_transfer_resumes_and_one_that_keeps_failing_is_not_taken(project, hub_env, served_bytes):
    with HubServer(repos={REPO_ID: {"model.safetensors": served_bytes}}, cut={"model.safetensors": [1000] * 20}) as hub:
        hub_env(hub.url)
        with pytest.raises(WeightsError, match="model.safetensors: RemoteProtocolError: peer closed connection"):
            fetch_weights(BACKBONE, {})
        assert nothing_written()
        hub.cut["model.safetensors"] = [1000]  # once: the client resumes with a Range request
        assert fetch_weights(BACKBONE, {})["sha256"] == hashlib.sha256(served_bytes).hexdigest()


def test_a_truncated_or_foreign_local_file(project, hub_env, tmp_path, served_bytes):
    (tmp_path / "cut.safetensors").write_bytes(served_bytes[: len(served_bytes) // 2])
    with pytest.raises(WeightsError, match=r"params backbone_weights.test_efficientnet: .*cut.safetensors is not a "
                                           r"readable weight file \(truncated"):
        fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "cut.safetensors")})
    (tmp_path / "resnet.safetensors").write_bytes(timm_weights("resnet10t"))
    with pytest.raises(WeightsError, match=r"resnet.safetensors does not hold the weights of timm's test_efficientnet "
                                           r"\(\d+ missing \(e.g. conv_stem.weight\); .*\); give the file of that backbone"):
        fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "resnet.safetensors")})
    assert nothing_written()


def test_the_wrong_file_from_the_hub_is_refused(project, hub_env):
    with HubServer(repos={REPO_ID: {"model.safetensors": timm_weights("resnet10t")}}) as hub:
        hub_env(hub.url)
        with pytest.raises(WeightsError, match="the Hugging Face Hub: .* does not hold the weights of timm's"):
            fetch_weights(BACKBONE, {})
    assert nothing_written()


def test_a_training_without_its_weights_says_how_to_get_them(project, tiny_params):
    with pytest.raises(WeightsError, match=r"data/weights/test_efficientnet.safetensors: the ImageNet weights of "
                                           r"backbone 'test_efficientnet' are not there; run `mbmt weights "
                                           r"test_efficientnet`"):
        create_model(model_settings(with_pretrained(tiny_params, "mtnet"), "mtnet"))


def test_the_weights_files_are_part_of_a_runs_identity(project, tiny_params, processed_data, tmp_path, hub_env):
    """Other weights are another run: the trainer's run directory changes with the file's bytes."""
    import timm

    from mbmt.training.checkpoint import imagenet_weights

    params = with_pretrained(tiny_params, "mtnet")
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(timm.create_model(BACKBONE).state_dict(), tmp_path / f"w{seed}.pth")
    fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "w0.pth")})
    first = imagenet_weights(model_params(params, "mtnet"))
    fetch_weights(BACKBONE, {BACKBONE: str(tmp_path / "w1.pth")})
    assert first.keys() == {BACKBONE} and imagenet_weights(model_params(params, "mtnet")) != first
    assert imagenet_weights(model_params(params, "mtan")) == {}

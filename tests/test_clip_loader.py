"""Loading CLIP: names, local weight files, and clear errors (no network needed)."""
import pytest
import torch

from san_d2.modeling.clip_loader import _is_torchscript_archive, load_clip


def test_random_weights_from_a_shipped_config():
    clip = load_clip("san-tiny-clip-vit-p16", "")
    assert clip.quick_gelu and "random" in clip.weights
    assert clip.pixel_mean == pytest.approx((122.7709, 116.7460, 104.0937), abs=1e-3)
    assert clip.pixel_std == pytest.approx((68.5005, 66.6322, 70.3232), abs=1e-3)
    assert clip.tokenizer(["a photo of a cat."]).shape == (1, 77)


def test_openai_alias_is_resolved_without_downloading():
    clip = load_clip("ViT-B/16", "")
    assert clip.model.visual.transformer.width == 768


def test_local_weights_file_is_loaded(tmp_path):
    source = load_clip("san-tiny-clip-vit-p16", "")
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = load_clip("san-tiny-clip-vit-p16", str(path))
    assert loaded.weights == str(path)
    for (name, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_json_config_path(tmp_path):
    from san_d2.modeling.clip_loader import CLIP_CONFIG_DIR

    path = tmp_path / "my-clip.json"
    path.write_text((CLIP_CONFIG_DIR / "san-tiny-clip-vit-p16.json").read_text())
    assert load_clip(str(path), "").model.visual.transformer.width == 64


def test_weights_of_another_model_are_rejected(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(RuntimeError, match="do not fit"):
        load_clip("san-tiny-clip-vit-p16", str(path))


@pytest.mark.parametrize(
    "name, pretrained, match",
    [
        ("ViT-Q/99", "", "Unknown CLIP model"),
        ("/no/such/clip.json", "", "not found"),
        ("ViT-B/16", "no-such-tag", "neither a local file nor an open_clip tag"),
    ],
)
def test_clear_errors(name, pretrained, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_clip(name, pretrained)


def test_torchscript_archives_are_recognised(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "jit.pt"))
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    assert _is_torchscript_archive(str(tmp_path / "jit.pt"))
    assert not _is_torchscript_archive(str(tmp_path / "plain.pt"))


def _register_gelu_variant(tmp_path):
    import json

    import open_clip

    from san_d2.modeling.clip_loader import CLIP_CONFIG_DIR

    config = json.loads((CLIP_CONFIG_DIR / "san-tiny-clip-vit-p16.json").read_text())
    config.pop("quick_gelu")
    path = tmp_path / "tiny-gelu-test.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return "tiny-gelu-test"


def test_weights_trained_with_quickgelu_get_quickgelu(tmp_path, monkeypatch):
    import open_clip

    name = _register_gelu_variant(tmp_path)
    assert not load_clip(name, "").quick_gelu
    weights = tmp_path / "weights.pt"
    torch.save(load_clip(name, "").model.state_dict(), weights)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda model, tag: {"quick_gelu": True} if tag == "openai" else {})
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, **kw: str(weights))
    clip = load_clip(name, "openai")
    assert clip.quick_gelu
    assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_failed_download_says_what_to_pass_instead(tmp_path, monkeypatch):
    import open_clip

    name = _register_gelu_variant(tmp_path)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, tag: {"quick_gelu": True})

    def offline(cfg, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(RuntimeError, match="set MODEL.SAN.CLIP_PRETRAINED_NAME to its path"):
        load_clip(name, "openai")

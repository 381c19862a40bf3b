"""mmsegmentation's SAN checkpoints: names and layouts both ways, the mmengine container read
without mmengine and without running its pickled objects, and clear errors."""
import os
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from san_d2 import CheckpointMismatchError, SANCheckpointer, get_san_cfg
from san_d2.checkpoint import CheckpointError
from san_d2.checkpoint.mmseg import derived_buffers, mmseg_to_san, san_to_mmseg

from .conftest import TEST_DATA, build_tiny_san


def _table(name):
    """(san_d2 name, shape, mmseg name, shape) of every tensor of a published model, as mmseg
    1.2.2 names them (tests/data, checked against mmseg's own model)."""
    rows = [line.split("\t") for line in (TEST_DATA / name).read_text().splitlines()[1:]]
    parse = lambda s: [int(d) for d in s.strip("[]").split(",") if d.strip()]  # noqa: E731
    return [(r[0], parse(r[1]), r[2], parse(r[3]) if r[2] != "-" else None) for r in rows]


def _meta_model(config):
    cfg = get_san_cfg(config, ["MODEL.SAN.CLIP_PRETRAINED_NAME", "", "MODEL.DEVICE", "meta"])
    with torch.device("meta"):
        return build_model(cfg)


@pytest.mark.parametrize("config, table", [
    ("san_clip_vit_res4_coco.yaml", "mmseg_keys_vitb16.tsv"),
    ("san_clip_vit_large_res4_coco.yaml", "mmseg_keys_vitl14.tsv"),
])
def test_names_and_shapes_both_ways(config, table):
    rows = _table(table)
    ours = _meta_model(config).state_dict()
    assert {r[0]: r[1] for r in rows} == {k: list(v.shape) for k, v in ours.items()}
    as_mmseg = san_to_mmseg(ours)
    assert {k: list(v.shape) for k, v in as_mmseg.items()} == {r[2]: r[3] for r in rows if r[3] is not None}
    back = mmseg_to_san(as_mmseg)
    assert {k: list(v.shape) for k, v in back.items()} == {r[0]: r[1] for r in rows if r[3] is not None}
    assert set(ours) - set(back) == {"criterion.empty_weight", "ov_classifier.attn_mask"}


# ------------------------------------------------------------------ a file in mmseg's container

MARKER_ENV = "SAN_D2_TEST_MARKER"


def _fake_mmengine():
    """A module pretending to be mmengine.logging.history_buffer, whose objects would leave a
    marker file if anything reconstructed them."""
    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self, values):
            self._log_history = np.asarray(values, dtype=np.float64)
            self._statistics_methods = {"min": HistoryBuffer.min}

        @classmethod
        def min(cls, buffer):
            return buffer._log_history.min()

        def __setstate__(self, state):
            open(os.environ[MARKER_ENV], "w").close()  # a side effect loading must not run
            self.__dict__.update(state)

    HistoryBuffer.__module__ = module.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    return module


def _save_mmseg_file(path, model, monkeypatch):
    module = _fake_mmengine()
    for name in ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer"):
        monkeypatch.setitem(sys.modules, name, module if name.endswith("buffer")
                            else types.ModuleType(name))
    buffer = module.HistoryBuffer([0.5, 0.25])
    torch.save({
        "meta": {"mmengine_version": "0.10.7", "dataset_meta": {"classes": ("sky", "grass")},
                 "seed": np.int64(0), "iter": 60000},
        "state_dict": san_to_mmseg(model.state_dict()),
        "message_hub": {"log_scalars": {"train/loss": buffer}, "runtime_info": {"iter": 60000},
                        "resumed_keys": {"iter": True}},
        "param_schedulers": [{"last_step": 60000, "base_values": np.array([1e-4])}],
    }, path)
    return module


def test_mmseg_file_loads_without_mmengine_and_runs_nothing(tmp_path, monkeypatch):
    source, _ = build_tiny_san(seed=1)
    path = tmp_path / "san-tiny_mmseg.pth"
    marker = tmp_path / "reconstructed"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    with monkeypatch.context() as patch:
        _save_mmseg_file(path, source, patch)
    assert "mmengine" not in sys.modules
    with pytest.raises(Exception, match="(?i)weights only load failed"):
        torch.load(path)  # torch's safe loader refuses the mmengine objects

    model, _ = build_tiny_san(seed=2)
    SANCheckpointer(model).load(str(path))
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert not marker.exists()


def test_nothing_runs_even_with_the_classes_importable(tmp_path, monkeypatch):
    source, _ = build_tiny_san(seed=1)
    path = tmp_path / "san-tiny_mmseg.pth"
    marker = tmp_path / "reconstructed"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    _save_mmseg_file(path, source, monkeypatch)  # the fake mmengine stays importable
    model, _ = build_tiny_san(seed=2)
    SANCheckpointer(model).load(str(path))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # a full unpickling does run it: the test is real
    assert marker.exists()


def test_mmseg_checkpoint_of_another_model_is_named(tmp_path):
    weights = OrderedDict([("backbone.stem.0.conv.weight", torch.zeros(8, 3, 3, 3)),
                           ("decode_head.conv_seg.weight", torch.zeros(4, 8, 1, 1)),
                           ("auxiliary_head.conv_seg.weight", torch.zeros(4, 8, 1, 1))])
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": weights}, tmp_path / "pspnet.pth")
    model, _ = build_tiny_san()
    with pytest.raises(CheckpointError, match="mmsegmentation checkpoint of another model .*"
                                              "auxiliary_head., backbone., decode_head."):
        SANCheckpointer(model).load(str(tmp_path / "pspnet.pth"))


def test_a_b16_file_with_the_l14_config_says_which_is_which(tmp_path):
    # The architecture shows in the names of CLIP's blocks and the patch projection's shape;
    # the other tensors of this stand-in file are placeholders.
    rows = _table("mmseg_keys_vitb16.tsv")
    weights = OrderedDict((r[2], torch.zeros(r[3]) if "patch_embed" in r[2] else torch.zeros(1))
                          for r in rows if r[3] is not None
                          and r[2].startswith(("image_encoder.", "decode_head.")))
    torch.save({"meta": {}, "state_dict": weights}, tmp_path / "b16.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        SANCheckpointer(_meta_model("san_clip_vit_large_res4_coco.yaml")).load(str(tmp_path / "b16.pth"))
    message = str(err.value)
    assert "CLIP is 12 blocks of width 768, patch 16 (ViT-B/16)" in message
    assert "config builds one with 24 blocks of width 1024, patch 14 (ViT-L/14)" in message
    assert "san_clip_vit_res4_coco.yaml" in message


def test_truncated_mmseg_file(tmp_path, monkeypatch):
    source, _ = build_tiny_san()
    with monkeypatch.context() as patch:
        _save_mmseg_file(tmp_path / "whole.pth", source, patch)
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        SANCheckpointer(build_tiny_san()[0]).load(str(tmp_path / "cut.pth"))


def test_derived_buffers_are_the_models_own():
    model, cfg = build_tiny_san()
    buffers = derived_buffers(model.state_dict(), cfg.MODEL.SAN.NUM_CLASSES,
                              cfg.MODEL.SAN.NO_OBJECT_WEIGHT)
    for name, tensor in buffers.items():
        assert torch.equal(tensor, model.state_dict()[name]), name


# ------------------------------------------------------------------ the converter

def test_converter_round_trips_are_bit_exact(tmp_path, monkeypatch):
    from san_d2.checkpoint.convert import convert_checkpoint
    from san_d2_tools.convert_checkpoint import main as convert_main

    model, cfg = build_tiny_san(seed=7)
    released = model.state_dict()
    torch.save({"model": released}, tmp_path / "d2.pth")
    assert convert_main(["--from", "detectron2", "--to", "mmseg", str(tmp_path / "d2.pth"),
                         str(tmp_path / "mmseg.pth"), "--num-classes", "4"]) == 0
    written = torch.load(tmp_path / "mmseg.pth", weights_only=True)  # plain data: mmseg reads it
    assert set(written) == {"meta", "state_dict"}
    assert all(name.startswith(("image_encoder.", "text_encoder.", "decode_head."))
               for name in written["state_dict"])
    convert_checkpoint(str(tmp_path / "mmseg.pth"), str(tmp_path / "back.pth"), "detectron2",
                       num_classes=cfg.MODEL.SAN.NUM_CLASSES)
    back = torch.load(tmp_path / "back.pth", weights_only=True)["model"]
    assert set(back) == set(released)
    for name, tensor in released.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name

    # And from an mmseg file as mmseg writes it (mmengine objects beside the weights).
    with monkeypatch.context() as patch:
        _save_mmseg_file(tmp_path / "release.pth", model, patch)
    convert_checkpoint(str(tmp_path / "release.pth"), str(tmp_path / "d2_again.pth"), "detectron2",
                       num_classes=4)
    convert_checkpoint(str(tmp_path / "d2_again.pth"), str(tmp_path / "mmseg_again.pth"), "mmseg")
    original = san_to_mmseg(released)
    again = torch.load(tmp_path / "mmseg_again.pth", weights_only=True)["state_dict"]
    assert list(again) == list(original)
    assert all(torch.equal(again[k], original[k]) for k in original)


def test_converter_refuses_what_it_cannot_do(tmp_path, capsys):
    from san_d2_tools.convert_checkpoint import main as convert_main

    model, _ = build_tiny_san()
    torch.save({"model": model.state_dict()}, tmp_path / "d2.pth")
    assert convert_main(["--from", "mmseg", "--to", "detectron2", str(tmp_path / "d2.pth"),
                         str(tmp_path / "out.pth")]) == 1
    assert "is a detectron2 checkpoint, not mmseg" in capsys.readouterr().err
    torch.save({"model": {"backbone.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    assert convert_main(["--from", "detectron2", "--to", "mmseg", str(tmp_path / "other.pth"),
                         str(tmp_path / "out.pth")]) == 1
    assert "is not a SAN checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()

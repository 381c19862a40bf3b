"""The model's parameter names and shapes are the released checkpoints'; loading is strict."""
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from san_d2 import CheckpointMismatchError, SANCheckpointer, get_san_cfg

from .conftest import TEST_DATA, build_tiny_san

VOCABULARY = ["sky", "grass", "road", "car"]


def _key_list(name: str):
    """{name: shape} of a released checkpoint (tests/data: the names, shapes and dtypes of
    every tensor in the paper's released san_vit_b_16.pth and san_vit_large_14.pth)."""
    rows = (line.split("\t") for line in (TEST_DATA / name).read_text().splitlines())
    return {key: [int(d) for d in shape.strip("[]").split(",") if d.strip()] for key, shape, _ in rows}


@pytest.mark.parametrize(
    "config, key_file, trainable_millions",
    [("san_clip_vit_res4_coco.yaml", "release_keys_vitb16.txt", 8.37),
     ("san_clip_vit_large_res4_coco.yaml", "release_keys_vitl14.txt", 9.32)],
)
def test_state_dict_matches_release_keys(config, key_file, trainable_millions):
    cfg = get_san_cfg(config,
                      ["MODEL.SAN.CLIP_PRETRAINED_NAME", "", "MODEL.DEVICE", "meta"])
    with torch.device("meta"):  # the real architecture, without allocating its weights
        model = build_model(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == _key_list(key_file)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1e6, 2) == trainable_millions


def _outputs(model, image):
    model.eval()
    with torch.no_grad():
        return model([{"image": image, "vocabulary": VOCABULARY}])[0]["sem_seg"]


def test_round_trip_through_detection_checkpointer(tmp_path):
    model, _ = build_tiny_san(seed=1)
    image = torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8)
    expected = _outputs(model, image)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("tiny")

    fresh, _ = build_tiny_san(seed=2)
    assert not torch.equal(_outputs(fresh, image), expected)
    DetectionCheckpointer(fresh).load(str(tmp_path / "tiny.pth"))
    assert torch.equal(_outputs(fresh, image), expected)


def test_mismatched_checkpoint_is_an_error(tmp_path):
    model, _ = build_tiny_san()
    other, _ = build_tiny_san("MODEL.SIDE_ADAPTER.NUM_QUERIES", "8")  # other shapes
    DetectionCheckpointer(other, save_dir=str(tmp_path)).save("other")
    with pytest.raises(CheckpointMismatchError, match=r"query_embed \(1, 8, 64\) in the file"):
        SANCheckpointer(model).load(str(tmp_path / "other.pth"))

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ov_classifier.")}
    state["some.unknown.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointMismatchError, match="some.unknown.weight") as err:
        SANCheckpointer(model).load(str(tmp_path / "partial.pth"))
    assert "ov_classifier.bg_embed" in str(err.value)
    # strict=False: detectron2's policy, the fitting weights load and the rest is logged.
    expected = state["side_adapter_network.query_embed"]
    SANCheckpointer(model, strict=False).load(str(tmp_path / "partial.pth"))
    assert torch.equal(model.side_adapter_network.query_embed, expected)


def test_load_state_dict_honours_strict():
    model, _ = build_tiny_san()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ov_classifier.")}
    result = model.load_state_dict(state, strict=False)  # nn.Module's contract
    assert "ov_classifier.bg_embed" in result.missing_keys
    with pytest.raises(RuntimeError, match="ov_classifier.bg_embed"):
        model.load_state_dict(state)


def test_derived_buffers_may_be_missing_or_of_another_vocabulary_size(tmp_path):
    # criterion.empty_weight follows NUM_CLASSES and ov_classifier.attn_mask the text context:
    # both are recomputed from the config, so a file without them, or one trained with
    # another vocabulary size, loads and the model keeps its own.
    model, _ = build_tiny_san("MODEL.SAN.NUM_CLASSES", "6")
    other, _ = build_tiny_san(seed=3)  # NUM_CLASSES 4
    state = other.state_dict()
    del state["ov_classifier.attn_mask"]
    torch.save({"model": state}, tmp_path / "other_vocabulary.pth")
    own_weight = model.criterion.empty_weight.clone()
    SANCheckpointer(model).load(str(tmp_path / "other_vocabulary.pth"))
    assert torch.equal(model.criterion.empty_weight, own_weight) and len(own_weight) == 7
    assert torch.equal(model.side_adapter_network.query_embed,
                       other.side_adapter_network.query_embed)
    causal = torch.full((77, 77), float("-inf")).triu(1)
    assert torch.equal(model.ov_classifier.attn_mask, causal)


def test_checkpoint_with_numpy_values_loads_with_san_checkpointer(tmp_path):
    model, _ = build_tiny_san()
    path = tmp_path / "with_numpy.pth"
    torch.save({"model": model.state_dict(), "iteration": np.int64(7),
                "stats": np.arange(3, dtype=np.float32)}, path)
    with pytest.raises(Exception, match="(?i)weights only load failed|unsupported global"):
        DetectionCheckpointer(model).load(str(path))
    checkpoint = SANCheckpointer(model).load(str(path), checkpointables=[])
    assert checkpoint["iteration"] == 7

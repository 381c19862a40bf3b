"""The model's parameter names and shapes are the released checkpoints'; loading is strict."""
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from san_d2 import CheckpointMismatchError, SANCheckpointer, get_san_cfg

from .conftest import REPO_ROOT, build_tiny_san

VOCABULARY = ["sky", "grass", "road", "car"]


def _key_list(shared_dir: Path, name: str):
    rows = (line.split("\t") for line in (shared_dir / "spec" / name).read_text().splitlines())
    return {key: [int(d) for d in shape.strip("[]").split(",") if d.strip()] for key, shape, _ in rows}


@pytest.mark.parametrize(
    "config, key_file, trainable_millions",
    [("san_clip_vit_res4_coco.yaml", "checkpoint_keys_vitb16.txt", 8.37),
     ("san_clip_vit_large_res4_coco.yaml", "checkpoint_keys_vitl14.txt", 9.32)],
)
def test_state_dict_matches_release_keys(shared_dir, config, key_file, trainable_millions):
    cfg = get_san_cfg(str(REPO_ROOT / "configs" / config),
                      ["MODEL.SAN.CLIP_PRETRAINED_NAME", "", "MODEL.DEVICE", "meta"])
    with torch.device("meta"):  # the real architecture, without allocating its weights
        model = build_model(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == _key_list(shared_dir, key_file)
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
    # Another architecture: fewer queries (shapes differ) and a NUM_CLASSES change.
    other, _ = build_tiny_san("MODEL.SIDE_ADAPTER.NUM_QUERIES", "8", "MODEL.SAN.NUM_CLASSES", "7")
    DetectionCheckpointer(other, save_dir=str(tmp_path)).save("other")
    with pytest.raises(CheckpointMismatchError, match="query_embed"):
        DetectionCheckpointer(model).load(str(tmp_path / "other.pth"))

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ov_classifier.")}
    state["some.unknown.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="some.unknown.weight") as err:
        model.load_state_dict(state)
    assert "ov_classifier.bg_embed" in str(err.value)


def test_checkpoint_with_numpy_values_loads_with_san_checkpointer(tmp_path):
    model, _ = build_tiny_san()
    path = tmp_path / "with_numpy.pth"
    torch.save({"model": model.state_dict(), "iteration": np.int64(7),
                "stats": np.arange(3, dtype=np.float32)}, path)
    with pytest.raises(Exception, match="(?i)weights only load failed|unsupported global"):
        DetectionCheckpointer(model).load(str(path))
    checkpoint = SANCheckpointer(model).load(str(path), checkpointables=[])
    assert checkpoint["iteration"] == 7

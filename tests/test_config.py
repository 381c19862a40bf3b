import ast
import logging
import re
from pathlib import Path

import pytest
import torch

from san_d2 import fall_back_to_cpu_without_cuda, get_san_cfg

from .conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))
PUBLISHED = sorted((REPO_ROOT / "configs").glob("*.yaml"))
MIN_SIZE_TRAIN = [320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960]


def _get(cfg, dotted_key):
    node = cfg
    for part in dotted_key.split("."):
        assert part in node, f"missing config key {dotted_key}"
        node = node[part]
    return node


def _config_md_rows(shared_dir: Path):
    """(key, default) pairs from the table of CONFIG.md."""
    rows = []
    for line in (shared_dir / "spec" / "CONFIG.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[A-Z_]+(\.[A-Z_]+)+", cells[0]):
            rows.append((cells[0], ast.literal_eval(cells[1])))
    return rows


def test_every_config_md_key_exists_with_its_default(shared_dir):
    rows = _config_md_rows(shared_dir)
    assert len(rows) >= 45, "CONFIG.md table not parsed"
    cfg = get_san_cfg()
    for key, default in rows:
        value = _get(cfg, key)
        if isinstance(default, list):
            value = list(value)
        assert value == default, f"{key}: {value!r} != {default!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path):
    assert get_san_cfg(str(path)).INPUT.FORMAT == "RGB"


@pytest.mark.parametrize("path", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_published_configs_write_out_min_size_train(path):
    assert list(get_san_cfg(str(path)).INPUT.MIN_SIZE_TRAIN) == MIN_SIZE_TRAIN


def test_published_values():
    base = get_san_cfg(str(REPO_ROOT / "configs" / "Base-coco-stuff-164K-171.yaml"))
    assert (base.SOLVER.IMS_PER_BATCH, base.SOLVER.BASE_LR, base.SOLVER.MAX_ITER) == (32, 1e-4, 60000)
    assert base.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR" and base.SOLVER.AMP.ENABLED
    assert base.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    assert base.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01
    assert base.SOLVER.BACKBONE_MULTIPLIER == 0.1
    assert tuple(base.INPUT.CROP.SIZE) == (640, 640) and base.INPUT.SIZE_DIVISIBILITY == 640
    assert list(base.TEST.AUG.MIN_SIZES) == [320, 480, 640, 800, 960, 1120]
    assert base.TEST.AUG.MAX_SIZE == 4480 and base.TEST.AUG.FLIP
    assert len(base.DATASETS.TEST) == 6

    vitb = get_san_cfg(str(REPO_ROOT / "configs" / "san_clip_vit_res4_coco.yaml"))
    assert vitb.MODEL.META_ARCHITECTURE == "SAN"
    assert vitb.SOLVER.BACKBONE_MULTIPLIER == 1.0
    assert vitb.MODEL.SAN.CLIP_MODEL_NAME == "ViT-B/16"

    vitl = get_san_cfg(str(REPO_ROOT / "configs" / "san_clip_vit_large_res4_coco.yaml"))
    assert vitl.MODEL.SAN.CLIP_RESOLUTION == 0.7
    assert vitl.MODEL.SAN.CLIP_MODEL_NAME == "ViT-L-14-336"
    assert vitl.MODEL.SAN.FEATURE_LAST_LAYER_IDX == 18
    assert list(vitl.MODEL.SIDE_ADAPTER.FUSION_MAP) == ["0->0", "6->1", "12->2", "18->3"]
    assert vitl.MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS == 16
    assert vitl.MODEL.SIDE_ADAPTER.VIT_NAME == "vit_w240n6d8_patch16"


def test_yaml_with_python_eval_tag_still_loads(tmp_path):
    # The paper's base YAML computes MIN_SIZE_TRAIN with this tag.
    (tmp_path / "published.yaml").write_text(
        "INPUT:\n"
        '  MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 640) for x in range(5, 16)]"]\n'
        "WANDB:\n  PROJECT: some_project\nMODEL:\n  FLASH: True\n"
    )
    cfg = get_san_cfg(str(tmp_path / "published.yaml"))
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == MIN_SIZE_TRAIN
    assert cfg.WANDB.PROJECT == "some_project"


def test_unknown_key_is_an_error(tmp_path):
    (tmp_path / "typo.yaml").write_text("MODEL:\n  SAN:\n    CLIP_RESOLUTON: 0.7\n")
    with pytest.raises(KeyError, match="CLIP_RESOLUTON"):
        get_san_cfg(str(tmp_path / "typo.yaml"))


def test_overrides_from_the_command_line():
    cfg = get_san_cfg(opts=["MODEL.SAN.CLIP_RESOLUTION", "0.7", "MODEL.SIDE_ADAPTER.NUM_QUERIES", "50"])
    assert cfg.MODEL.SAN.CLIP_RESOLUTION == 0.7 and cfg.MODEL.SIDE_ADAPTER.NUM_QUERIES == 50


@pytest.mark.parametrize("cuda_available, expected", [(False, "cpu"), (True, "cuda")])
def test_device_falls_back_to_cpu_only_without_cuda(monkeypatch, caplog, cuda_available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    cfg = get_san_cfg()
    assert cfg.MODEL.DEVICE == "cuda"
    with caplog.at_level(logging.INFO, logger="san_d2"):
        assert fall_back_to_cpu_without_cuda(cfg) == expected
    assert cfg.MODEL.DEVICE == expected
    if not cuda_available:
        assert "CUDA is not available: running on CPU" in caplog.text


def test_explicit_cpu_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = get_san_cfg(opts=["MODEL.DEVICE", "cpu"])
    assert fall_back_to_cpu_without_cuda(cfg) == "cpu"

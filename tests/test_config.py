import ast
import logging
import os

import pytest
import torch

from san_d2 import fall_back_to_cpu_without_cuda, get_san_cfg
from san_d2.model_zoo import CONFIG_ROOT, get_config_file, list_configs

from .conftest import REPO_ROOT, TEST_DATA

CONFIGS = list_configs()
PUBLISHED = ["Base-coco-stuff-164K-171.yaml", "san_clip_vit_res4_coco.yaml",
             "san_clip_vit_large_res4_coco.yaml"]
MIN_SIZE_TRAIN = [320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960]


def _get(cfg, dotted_key):
    node = cfg
    for part in dotted_key.split("."):
        assert part in node, f"missing config key {dotted_key}"
        node = node[part]
    return node


def _paper_defaults():
    """(key, default) of every key the paper's code adds to detectron2's config."""
    for line in (TEST_DATA / "paper_config_defaults.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, default = line.split("\t")
            yield key, ast.literal_eval(default)


def test_every_key_of_the_papers_code_exists_with_its_default():
    rows = list(_paper_defaults())
    assert len(rows) == 49
    cfg = get_san_cfg()
    for key, default in rows:
        value = _get(cfg, key)
        if isinstance(default, list):
            value = list(value)
        assert value == default, f"{key}: {value!r} != {default!r}"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
    assert get_san_cfg(name).INPUT.FORMAT == "RGB"


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_configs_write_out_min_size_train(name):
    assert list(get_san_cfg(name).INPUT.MIN_SIZE_TRAIN) == MIN_SIZE_TRAIN


def test_shipped_configs_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = get_config_file("san_clip_vit_large_res4_coco.yaml")
    assert os.path.isfile(path) and os.path.samefile(os.path.dirname(path), CONFIG_ROOT)
    for name in ("san_clip_vit_large_res4_coco.yaml", "configs/san_clip_vit_large_res4_coco.yaml",
                 path):
        cfg = get_san_cfg(name)  # _BASE_ chain of two files, resolved beside the packaged file
        assert cfg.MODEL.SAN.CLIP_MODEL_NAME == "ViT-L-14-336" and cfg.SOLVER.MAX_ITER == 60000
    assert {"tiny/san_tiny.yaml", "quickstart/san_tiny_synthetic.yaml"} <= set(CONFIGS)


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "san_clip_vit_res4_coco.yaml").write_text("MODEL:\n  SAN:\n    CLIP_RESOLUTION: 0.25\n")
    assert get_san_cfg("san_clip_vit_res4_coco.yaml").MODEL.SAN.CLIP_RESOLUTION == 0.25


def test_unknown_config_names_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match=r"no_such\.yaml not found.*tiny/san_tiny\.yaml"):
        get_san_cfg("no_such.yaml")


def test_checkout_configs_folder_is_the_packaged_one():
    # configs/ at the top of a checkout (where the paper's code has it) is the package data.
    assert os.path.samefile(REPO_ROOT / "configs", REPO_ROOT / "san_d2" / "model_zoo" / "configs")


def test_published_values():
    base = get_san_cfg("Base-coco-stuff-164K-171.yaml")
    assert (base.SOLVER.IMS_PER_BATCH, base.SOLVER.BASE_LR, base.SOLVER.MAX_ITER) == (32, 1e-4, 60000)
    assert base.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR" and base.SOLVER.AMP.ENABLED
    assert base.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    assert base.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01
    assert base.SOLVER.BACKBONE_MULTIPLIER == 0.1
    assert tuple(base.INPUT.CROP.SIZE) == (640, 640) and base.INPUT.SIZE_DIVISIBILITY == 640
    assert list(base.TEST.AUG.MIN_SIZES) == [320, 480, 640, 800, 960, 1120]
    assert base.TEST.AUG.MAX_SIZE == 4480 and base.TEST.AUG.FLIP
    assert len(base.DATASETS.TEST) == 6

    vitb = get_san_cfg("san_clip_vit_res4_coco.yaml")
    assert vitb.MODEL.META_ARCHITECTURE == "SAN"
    assert vitb.SOLVER.BACKBONE_MULTIPLIER == 1.0
    assert vitb.MODEL.SAN.CLIP_MODEL_NAME == "ViT-B/16"

    vitl = get_san_cfg("san_clip_vit_large_res4_coco.yaml")
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

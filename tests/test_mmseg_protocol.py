"""mmsegmentation's protocol around the same network: test resize, post-processing order,
ms+flip, class names and training recipe, each against an independent computation."""
import math

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from PIL import Image

from san_d2 import Trainer, get_san_cfg
from san_d2.data import build_train_mapper
from san_d2.data.transforms import MMSegResizeShortestEdge
from san_d2.engine import build_param_groups
from san_d2.modeling.test_time_augmentation import MMSegTTA, build_tta_model

from .conftest import build_tiny_san
from .reference_math import resize2d

MMSEG_B16 = "mmseg/san-vit-b16_coco-stuff164k-640x640.yaml"
MMSEG_L14 = "mmseg/san-vit-l14_coco-stuff164k-640x640.yaml"
MMSEG_TEST = ["INPUT.TEST_RESIZE", "mmseg", "MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE", "False"]


def _meta_state(config, *opts):
    cfg = get_san_cfg(config, ["MODEL.SAN.CLIP_PRETRAINED_NAME", "", "MODEL.DEVICE", "meta", *opts])
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}, cfg


@pytest.mark.parametrize("mmseg_config, published", [
    (MMSEG_B16, "san_clip_vit_res4_coco.yaml"), (MMSEG_L14, "san_clip_vit_large_res4_coco.yaml")])
def test_mmseg_configs_have_the_published_architecture(mmseg_config, published):
    ours, cfg = _meta_state(mmseg_config)
    assert ours == _meta_state(published)[0]
    assert cfg.INPUT.TEST_RESIZE == "mmseg" and not cfg.MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE
    assert cfg.TEST.AUG.RECIPE == "mmseg" and cfg.DATASETS.CLASS_NAMES == "mmseg"


# ---------------------------------------------------------------------------- test resize

def _mmcv_size(height, width, short=640, cap=2560):
    """mmseg's ResizeShortestEdge, then mmcv's rescale_size, written from their definitions."""
    s = short / min(height, width)
    h, w = (short, width * s) if height < width else (height * s, short)
    if max(h, w) > cap:
        h, w = h * cap / max(h, w), w * cap / max(h, w)
    long_edge, short_edge = max(math.floor(w + 0.5), math.floor(h + 0.5)), \
        min(math.floor(w + 0.5), math.floor(h + 0.5))
    f = min(long_edge / max(height, width), short_edge / min(height, width))
    return math.floor(height * f + 0.5), math.floor(width * f + 0.5)


@pytest.mark.parametrize("height, width", [(97, 131), (480, 640), (640, 427), (100, 1000),
                                           (333, 3000), (1200, 257)])
def test_mmseg_resize_is_mmcvs_rule_and_opencv_bilinear(height, width):
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    transform = MMSegResizeShortestEdge(640, 2560).get_transform(image)
    new_h, new_w = _mmcv_size(height, width)
    expected = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(transform.apply_image(image), expected)


def test_the_two_resizes_differ():
    # mmcv recomputes the size when the long side is capped, and OpenCV does not anti-alias.
    image = np.random.default_rng(0).integers(0, 256, (333, 3000, 3), dtype=np.uint8)
    ours = MMSegResizeShortestEdge(640, 2560).get_transform(image).apply_image(image)
    detectron2 = T.ResizeShortestEdge(640, 2560).get_transform(image).apply_image(image)
    assert ours.shape != detectron2.shape
    small = image[:97, :131]
    a = MMSegResizeShortestEdge(640, 2560).get_transform(small).apply_image(small)
    b = T.ResizeShortestEdge(640, 2560).get_transform(small).apply_image(small)
    assert a.shape == b.shape and not np.array_equal(a, b)


# ---------------------------------------------------------------------------- post-processing

def _sharp_masks(q=6, h=10, w=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.where(torch.rand(q, h, w, generator=generator) > 0.5, 12.0, -12.0)
    logits = torch.randn(q, 5, generator=generator) * 3
    return logits, masks


def _reference(logits, masks, padded, image, output, masks_first):
    """float64: SAN's order (resize mask logits, then sigmoid and combine) or mmseg's
    (up-sample, sigmoid and combine at the padded size, then crop and resize the scores)."""
    probs = logits.double().softmax(-1)[:, :-1]
    up = resize2d(masks, padded, "bilinear")
    if masks_first:
        m = resize2d(up[:, :image[0], :image[1]], output, "bilinear")
        return torch.einsum("qc,qhw->chw", probs, torch.sigmoid(m))
    s = torch.einsum("qc,qhw->chw", probs, torch.sigmoid(up))
    return resize2d(s[:, :image[0], :image[1]], output, "bilinear")


def test_both_post_processing_orders_against_references_and_apart():
    model, _ = build_tiny_san()
    logits, masks = _sharp_masks()
    padded, image, output = (160, 192), (150, 181), (97, 131)
    results = {}
    for masks_first in (True, False):
        model.sem_seg_postprocess_before_inference = masks_first
        ours = model._semantic_inference(logits, masks, padded, image, output)
        expected = _reference(logits, masks, padded, image, output, masks_first)
        assert (ours.double() - expected).abs().max() <= 1e-5, masks_first
        results[masks_first] = ours
    difference = (results[True] - results[False]).abs()
    assert difference.max() > 1e-2  # the switch is real on sharp masks
    assert (results[True].argmax(0) != results[False].argmax(0)).any()


# ---------------------------------------------------------------------------- ms+flip

def test_mmseg_tta_is_the_average_of_its_twelve_softmaxes(tmp_path):
    model, cfg = build_tiny_san(*MMSEG_TEST, "TEST.AUG.RECIPE", "mmseg")
    model.eval()
    rgb = np.random.default_rng(5).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "image.png")
    vocabulary = ["sky", "grass", "road"]
    record = {"file_name": str(tmp_path / "image.png"), "height": 41, "width": 57,
              "image": torch.zeros(3, 8, 8, dtype=torch.uint8),  # what the test mapper made
              "vocabulary": vocabulary}
    tta = build_tta_model(cfg, model)
    assert isinstance(tta, MMSegTTA)
    ours = tta([record])[0]["sem_seg"]

    total = torch.zeros(3, 41, 57)
    for ratio in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        w, h = math.floor(57 * ratio + 0.5), math.floor(41 * ratio + 0.5)
        f = min(max(w, h) / 57, min(w, h) / 41)
        size = (math.floor(57 * f + 0.5), math.floor(41 * f + 0.5))
        resized = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        for flip in (False, True):
            image = np.ascontiguousarray(resized[:, ::-1] if flip else resized)
            with torch.no_grad():
                scores = model([{"image": torch.from_numpy(image).permute(2, 0, 1),
                                 "height": 41, "width": 57, "vocabulary": vocabulary}])[0]["sem_seg"]
            scores = scores.flip(-1) if flip else scores
            total += scores.softmax(0)
    assert (ours - total / 12).abs().max() <= 1e-6


# ---------------------------------------------------------------------------- class names

def _register_one_image_dataset(tmp_path, name, labelset, classes):
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "img" / "a.jpg")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "gt" / "a.png")
    from san_d2.data.datasets import register_sem_seg

    register_sem_seg(name, str(tmp_path / "img"), str(tmp_path / "gt"), stuff_classes=classes,
                     ignore_label=255, prepare_hint="-", labelset=labelset)


def test_mmseg_class_names_are_selectable_and_the_default_stays(tmp_path):
    from san_d2.data import load_labelset

    names = load_labelset("voc_20")
    _register_one_image_dataset(tmp_path, "class_names_test_voc", "voc_20", names)
    for setting, last in (("paper", "tv"), ("mmseg", "tvmonitor")):
        cfg = get_san_cfg("tiny/san_tiny.yaml", ["DATASETS.CLASS_NAMES", setting,
                                                 "DATALOADER.NUM_WORKERS", "0"])
        (record,) = next(iter(Trainer.build_test_loader(cfg, "class_names_test_voc")))
        vocabulary = record.get("vocabulary") or MetadataCatalog.get("class_names_test_voc").stuff_classes
        assert list(vocabulary)[19] == last and list(vocabulary)[:19] == list(names[:19])
    assert MetadataCatalog.get("pcontext_sem_seg_val").stuff_classes[49] == "diningtable"
    DatasetCatalog.remove("class_names_test_voc")


# ---------------------------------------------------------------------------- training recipe

def test_mmseg_weight_decay_rule():
    def decays(config):
        cfg = get_san_cfg(config, ["MODEL.SAN.CLIP_PRETRAINED_NAME", "", "MODEL.DEVICE", "meta"])
        with torch.device("meta"):
            model = build_model(cfg)
        solver = cfg.SOLVER
        groups = build_param_groups(
            model, base_lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY,
            weight_decay_norm=solver.WEIGHT_DECAY_NORM, weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
            embed_fragments=list(solver.WEIGHT_DECAY_EMBED_GROUP),
            backbone_multiplier=solver.BACKBONE_MULTIPLIER, clip_multiplier=solver.CLIP_MULTIPLIER)
        return {g["name"]: g["weight_decay"] for g in groups}, cfg

    mmseg, cfg = decays(MMSEG_B16)
    assert sorted(n for n, d in mmseg.items() if d == 0) == [
        "clip_visual_extractor.positional_embedding", "side_adapter_network.query_pos_embed",
        "side_adapter_network.vit_model.pos_embed"]
    assert mmseg["side_adapter_network.query_embed"] == 1e-4
    assert mmseg["side_adapter_network.vit_model.blocks.0.norm1.weight"] == 1e-4
    paper, _ = decays("san_clip_vit_res4_coco.yaml")
    assert sum(d == 0 for d in paper.values()) == 36
    assert cfg.SOLVER.POLY_LR_POWER == 1.0 and cfg.SOLVER.WARMUP_ITERS == 0


def test_mmseg_training_pads_after_normalisation(tmp_path):
    MetadataCatalog.get("pad_test_255").set(stuff_classes=["a", "b"], ignore_label=255)
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "img.png")
    label = np.zeros((40, 40), np.uint8)
    label[:, 20:] = 1
    Image.fromarray(label).save(tmp_path / "gt.png")
    record = {"file_name": str(tmp_path / "img.png"), "sem_seg_file_name": str(tmp_path / "gt.png"),
              "meta": {"dataset_name": "pad_test_255"}}
    opts = ["DATASETS.TRAIN", "('pad_test_255',)", "INPUT.MIN_SIZE_TRAIN", "(40,)",
            "INPUT.CROP.ENABLED", "False", "INPUT.SIZE_DIVISIBILITY", "64", "INPUT.COLOR_AUG_SSD", "False"]
    paper = build_train_mapper(get_san_cfg("tiny/san_tiny.yaml", opts))(record)
    mmseg = build_train_mapper(get_san_cfg("tiny/san_tiny.yaml", [*opts, "INPUT.PAD_AFTER_NORMALIZATION", "True"]))(record)
    assert paper["image"].shape[-2:] == (64, 64) and (paper["image"][:, 40:] == 128).all()
    assert mmseg["image"].shape[-2:] == (40, 40) and mmseg["sem_seg"].shape == (64, 64)
    model, _ = build_tiny_san()
    padded = model._preprocess([mmseg["image"]], min_size=model._target_size([mmseg])).tensor
    assert padded.shape[-2:] == (64, 64) and (padded[..., 40:, :] == 0).all()
    assert (padded[..., :40, :40] != 0).all()

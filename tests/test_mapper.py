"""The mask_former_semantic training mapper and the SSD colour augmentation."""
import random

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from PIL import Image

from san_d2 import get_san_cfg
from san_d2.data import MaskFormerSemanticDatasetMapper, build_train_mapper


def _register(name, ignore_label):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(stuff_classes=["a"], ignore_label=ignore_label)


def _cfg(dataset, *opts):
    return get_san_cfg(opts=[
        "DATASETS.TRAIN", f"('{dataset}',)", "INPUT.FORMAT", "RGB",
        "INPUT.MIN_SIZE_TRAIN", "(40,)", "INPUT.MAX_SIZE_TRAIN", "1000",
        "INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", "(32, 32)",
        "INPUT.SIZE_DIVISIBILITY", "48", "INPUT.COLOR_AUG_SSD", "True", *opts])


def _write_sample(tmp_path, label, ext="png"):
    h, w = label.shape
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    if label.dtype == np.uint16:
        Image.fromarray(label.astype(np.uint16)).save(tmp_path / f"gt.{ext}")
    else:
        Image.fromarray(label).save(tmp_path / f"gt.{ext}")
    return {"file_name": str(tmp_path / "img.png"), "sem_seg_file_name": str(tmp_path / f"gt.{ext}"),
            "meta": {"dataset_name": "x"}}


def _check_sample(out, ignore, size):
    image, sem_seg, inst = out["image"], out["sem_seg"], out["instances"]
    assert image.dtype == torch.uint8 and image.shape == (3, size, size)
    assert sem_seg.dtype == torch.int64 and sem_seg.shape == (size, size)
    classes = sorted(set(sem_seg.unique().tolist()) - {ignore})
    assert inst.gt_classes.tolist() == classes and inst.gt_classes.dtype == torch.int64
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (len(classes), size, size)
    for c, mask in zip(classes, inst.gt_masks):
        assert torch.equal(mask, sem_seg == c)
    assert inst.image_size == (size, size)


def test_crop_pad_and_class_masks(tmp_path):
    _register("mapper_test_255", 255)
    label = np.zeros((40, 60), np.uint8)
    label[:, 30:] = 3
    label[:5] = 255
    record = _write_sample(tmp_path, label)
    mapper = build_train_mapper(_cfg("mapper_test_255"))
    assert isinstance(mapper, MaskFormerSemanticDatasetMapper)
    np.random.seed(0)
    for _ in range(5):
        out = mapper(record)
        _check_sample(out, 255, 48)
        # Crop 32x32 then pad right/bottom to exactly 48x48: image 128, label = ignore.
        assert (out["image"][:, 32:, :] == 128).all() and (out["image"][:, :, 32:] == 128).all()
        assert (out["sem_seg"][32:, :] == 255).all() and (out["sem_seg"][:, 32:] == 255).all()
        assert set(out["sem_seg"].unique().tolist()) <= {0, 3, 255}
    assert (out["height"], out["width"]) == (40, 60)
    assert "sem_seg_file_name" not in out and out["meta"] == {"dataset_name": "x"}


def test_sixteen_bit_labels_survive(tmp_path):
    _register("mapper_test_65535", 65535)
    label = np.full((40, 40), 65535, np.uint16)
    label[:20, :20] = 458
    label[20:, 20:] = 300
    label[:20, 20:] = 7
    record = _write_sample(tmp_path, label, ext="tif")
    mapper = build_train_mapper(_cfg("mapper_test_65535", "INPUT.CROP.ENABLED", "False",
                                     "INPUT.SIZE_DIVISIBILITY", "48"))
    out = mapper(record)
    _check_sample(out, 65535, 48)
    assert set(out["sem_seg"].unique().tolist()) == {7, 300, 458, 65535}
    assert out["instances"].gt_classes.tolist() == [7, 300, 458]


def test_all_ignore_label_gives_empty_masks(tmp_path):
    _register("mapper_test_255", 255)
    record = _write_sample(tmp_path, np.full((40, 40), 255, np.uint8))
    out = build_train_mapper(_cfg("mapper_test_255"))(record)
    assert out["instances"].gt_masks.shape == (0, 48, 48)
    assert len(out["instances"].gt_classes) == 0


def test_single_category_area_constraint(tmp_path):
    _register("mapper_test_255", 255)
    label = np.zeros((40, 40), np.uint8)
    label[:, 28:] = 1  # class 1 covers the right 30%
    mapper = build_train_mapper(_cfg("mapper_test_255", "INPUT.COLOR_AUG_SSD", "False",
                                     "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", "0.75",
                                     "INPUT.CROP.SIZE", "(20, 20)"))
    record = _write_sample(tmp_path, label)
    np.random.seed(1)
    for _ in range(20):
        sem_seg = mapper(record)["sem_seg"]
        counts = torch.bincount(sem_seg[sem_seg != 255].flatten())
        assert len(counts) > 1 and counts.max() < 0.75 * counts.sum()


def test_mapper_rejects_misuse(tmp_path):
    _register("mapper_test_255", 255)
    with pytest.raises(ValueError, match="for training"):
        MaskFormerSemanticDatasetMapper(_cfg("mapper_test_255"), is_train=False)
    record = _write_sample(tmp_path, np.zeros((40, 40), np.uint8))
    record["annotations"] = []
    with pytest.raises(ValueError, match="annotations"):
        build_train_mapper(_cfg("mapper_test_255"))(record)
    with pytest.raises(ValueError, match="DATASET_MAPPER_NAME"):
        build_train_mapper(_cfg("mapper_test_255", "INPUT.DATASET_MAPPER_NAME", "nope"))


def test_color_aug_is_detectron2s_point_rend_transform(tmp_path):
    # The paper's code uses detectron2's own transform; its random draws come from Python's
    # `random` (hue shift in -18..18 inclusive), so seeding `random` makes a run repeatable.
    _register("mapper_test_255", 255)
    mapper = build_train_mapper(_cfg("mapper_test_255"))
    transforms = [getattr(a, "tfm", a) for a in mapper.augmentations.augs]  # wrapped by detectron2
    color_augs = [t for t in transforms if isinstance(t, ColorAugSSDTransform)]
    assert len(color_augs) == 1

    record = _write_sample(tmp_path, np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) % 5)
    mapper.augmentations = T.AugmentationList(color_augs)  # colour only: no random geometry
    outputs = []
    for _ in range(2):
        random.seed(7)
        outputs.append(mapper(record))
    image = np.asarray(Image.open(record["file_name"]))
    random.seed(7)
    expected = ColorAugSSDTransform(img_format="RGB").apply_image(image.copy())
    for out in outputs:
        assert np.array_equal(out["image"].permute(1, 2, 0).numpy()[:40, :40], expected)
        assert np.array_equal(out["sem_seg"].numpy()[:40, :40], np.asarray(Image.open(
            record["sem_seg_file_name"])))
    assert not np.array_equal(expected, image)


def test_ignore_label_comes_from_the_training_datasets_metadata():
    # PC-459 and ADE-847 ignore 65535; the crop's category constraint must not count it as a
    # class (MODEL.SEM_SEG_HEAD.IGNORE_VALUE, detectron2's 255, plays no part).
    _register("mapper_test_65535", 65535)
    mapper = build_train_mapper(_cfg("mapper_test_65535"))
    crops = [a for a in mapper.augmentations.augs if isinstance(a, T.RandomCrop_CategoryAreaConstraint)]
    assert [c.ignored_category for c in crops] == [65535] and mapper.ignore_label == 65535

    _register("mapper_test_255", 255)
    cfg = _cfg("mapper_test_255")
    cfg.DATASETS.TRAIN = ("mapper_test_255", "mapper_test_65535")
    with pytest.raises(ValueError, match="ignore different label values"):
        build_train_mapper(cfg)

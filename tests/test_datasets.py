"""Benchmark registrations: class lists, metadata, folder checks and name pairing."""
import hashlib
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from san_d2.data import load_labelset
from san_d2.data.datasets import coco_stuff_id_map, load_paired_sem_seg, register_all_benchmarks

# SHA-256 of the class names joined by "\n", as the paper's code registers them (the lists its
# published results were computed with; ADE-150 is detectron2's own list, checked raw below).
NAME_HASHES = {
    "voc_20": "0575f1e3360927e6f90b98704e60ee079272e2c2d17bc985774e60223e997bb6",
    "coco_stuff_171": "8ea44449837dceb30923012b201fe0152adc612160d0d040c9cfcd77e95f6801",
    "pcontext_59": "1c0546d54360b6030db946e7e75f14a0778f37edebd0051b8834027f8b5aab89",
    "pcontext_459": "c9fe8ff7083d2572021691666a700755d8f4e1c634585ba9919a3f3a2c834538",
    "ade20k_847": "ee311c5f3b780a16a58f40726927f6c41149860a5fca6c1116ea1dca129efd8b",
}
ADE150_RAW_HASH = "e09fb83957a3a604e8fc67408625d3fbdb6e7923c40663032abcf55658d0c95d"

REGISTRATIONS = {
    # name: (labelset, ignore_label, image dir, label dir) relative to the datasets root
    "coco_2017_train_stuff_sem_seg": ("coco_stuff_171", 255, "coco/train2017",
                                      "coco/stuffthingmaps_detectron2/train2017"),
    "coco_2017_test_stuff_sem_seg": ("coco_stuff_171", 255, "coco/val2017",
                                     "coco/stuffthingmaps_detectron2/val2017"),
    "voc_sem_seg_train": ("voc_20", 255, "VOC2012/JPEGImages", "VOC2012/annotations_detectron2/train"),
    "voc_sem_seg_val": ("voc_20", 255, "VOC2012/JPEGImages", "VOC2012/annotations_detectron2/val"),
    "pcontext_sem_seg_train": ("pcontext_59", 255, "pcontext/train/image", "pcontext/train/label"),
    "pcontext_sem_seg_val": ("pcontext_59", 255, "pcontext/val/image", "pcontext/val/label"),
    "pcontext_full_sem_seg_train": ("pcontext_459", 65535, "pcontext_full/train/image",
                                    "pcontext_full/train/label"),
    "pcontext_full_sem_seg_val": ("pcontext_459", 65535, "pcontext_full/val/image",
                                  "pcontext_full/val/label"),
    "ade20k_sem_seg_val": ("ade20k_150", 255, "ADEChallengeData2016/images/validation",
                           "ADEChallengeData2016/annotations_detectron2/validation"),
    "ade20k_full_sem_seg_val": ("ade20k_847", 65535, "ADE20K_2021_17_01/images_detectron2/validation",
                                "ADE20K_2021_17_01/annotations_detectron2/validation"),
}


def _sha(items, sep):
    return hashlib.sha256(sep.join(items).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(NAME_HASHES))
def test_labelset_hashes(name):
    assert _sha(load_labelset(name), "\n") == NAME_HASHES[name]


def test_ade150_vocabulary_is_detectron2s_list_stripped():
    raw = MetadataCatalog.get("ade20k_sem_seg_val").stuff_classes
    assert _sha(raw, "\n") == ADE150_RAW_HASH and raw[8] == "window "
    assert [c.strip() for c in raw] == list(load_labelset("ade20k_150"))


def test_coco_id_map():
    id_map = coco_stuff_id_map()
    assert list(id_map.values()) == list(range(171))
    assert _sha([str(i) for i in id_map], ",") == (
        "3c436acf49fac61a1b42d3ad4a544b2e9d5cbcc3b885edc094402956c491f5ba")
    assert MetadataCatalog.get("coco_2017_test_stuff_sem_seg").stuff_dataset_id_to_contiguous_id == id_map


@pytest.mark.parametrize("name", sorted(REGISTRATIONS))
def test_registration_metadata(name):
    labelset, ignore, image_dir, label_dir = REGISTRATIONS[name]
    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    meta = MetadataCatalog.get(name)
    assert [c.strip() for c in meta.stuff_classes] == list(load_labelset(labelset))
    assert meta.ignore_label == ignore and meta.evaluator_type == "sem_seg"
    assert os.path.normpath(meta.image_root) == os.path.normpath(os.path.join(root, image_dir))
    assert os.path.normpath(meta.sem_seg_root) == os.path.normpath(os.path.join(root, label_dir))
    assert name in DatasetCatalog.list()


def test_missing_folder_names_the_path_and_the_script(tmp_path):
    register_all_benchmarks(str(tmp_path))
    try:
        with pytest.raises(FileNotFoundError) as err:
            DatasetCatalog.get("ade20k_full_sem_seg_val")
        message = str(err.value)
        assert str(tmp_path / "ADE20K_2021_17_01" / "images_detectron2" / "validation") in message
        assert "prepare_ade20k_full_sem_seg.py" in message
    finally:
        register_all_benchmarks(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def _touch_pairs(tmp_path, image_names, label_names):
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    for name in image_names:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img" / f"{name}.jpg")
    for name in label_names:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "gt" / f"{name}.png")


def test_pairs_by_name_and_skips_images_without_labels(tmp_path):
    _touch_pairs(tmp_path, ["b", "a", "c", "extra"], ["c", "a", "b"])
    records = load_paired_sem_seg("t", str(tmp_path / "img"), str(tmp_path / "gt"), "png", "jpg", "x")
    assert [(os.path.basename(r["file_name"]), os.path.basename(r["sem_seg_file_name"]))
            for r in records] == [("a.jpg", "a.png"), ("b.jpg", "b.png"), ("c.jpg", "c.png")]


def test_labels_without_images_are_an_error_even_when_counts_agree(tmp_path):
    # detectron2's load_sem_seg would pair these by sorted position without noticing.
    _touch_pairs(tmp_path, ["a", "b", "c"], ["a", "b", "d"])
    with pytest.raises(ValueError, match=r"1 of 3 labels .* have no image.*\bd\b"):
        load_paired_sem_seg("t", str(tmp_path / "img"), str(tmp_path / "gt"), "png", "jpg", "x")


def test_empty_label_folder_is_an_error(tmp_path):
    _touch_pairs(tmp_path, ["a"], [])
    with pytest.raises(FileNotFoundError, match="no \\*.png labels"):
        load_paired_sem_seg("t", str(tmp_path / "img"), str(tmp_path / "gt"), "png", "jpg", "run it")

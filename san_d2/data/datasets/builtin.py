"""The six benchmarks of the paper, registered under ``$DETECTRON2_DATASETS`` with the folder
layout, class lists and ignore values of the paper's code (``san/data/datasets/register_*.py``)."""
import os
from typing import Dict

from ..labelsets import load_labelset
from .sem_seg import register_sem_seg

__all__ = [
    "register_all_coco_stuff", "register_all_voc", "register_all_pcontext",
    "register_all_pcontext_full", "register_all_ade20k", "register_all_ade20k_full",
    "register_all_synthetic", "register_all_benchmarks", "coco_stuff_id_map",
]

# COCO category ids 1..182 that COCO-Stuff-171 does not use.
_UNUSED_COCO_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}


def coco_stuff_id_map() -> Dict[int, int]:
    """{COCO category id: train id} for the 171 classes, in ascending id order."""
    used = [i for i in range(1, 183) if i not in _UNUSED_COCO_IDS]
    return {coco_id: train_id for train_id, coco_id in enumerate(used)}


def _register_splits(root: str, splits, *, labelset: str, ignore_label: int, gt_ext: str,
                     script: str, **extra) -> None:
    for name, image_dir, gt_dir in splits:
        register_sem_seg(name, os.path.join(root, image_dir), os.path.join(root, gt_dir),
                         stuff_classes=load_labelset(labelset), ignore_label=ignore_label,
                         gt_ext=gt_ext, prepare_hint=f"`python datasets/{script}`",
                         labelset=labelset, **extra)


def register_all_coco_stuff(root: str) -> None:
    _register_splits(root, [
        ("coco_2017_train_stuff_sem_seg", "coco/train2017", "coco/stuffthingmaps_detectron2/train2017"),
        ("coco_2017_test_stuff_sem_seg", "coco/val2017", "coco/stuffthingmaps_detectron2/val2017"),
    ], labelset="coco_stuff_171", ignore_label=255, gt_ext="png",
        script="prepare_coco_stuff_sem_seg.py", stuff_dataset_id_to_contiguous_id=coco_stuff_id_map())


def register_all_voc(root: str) -> None:
    _register_splits(root, [
        (f"voc_sem_seg_{split}", "VOC2012/JPEGImages", f"VOC2012/annotations_detectron2/{split}")
        for split in ("train", "val")
    ], labelset="voc_20", ignore_label=255, gt_ext="png", script="prepare_voc_sem_seg.py")


def register_all_pcontext(root: str) -> None:
    _register_splits(root, [
        (f"pcontext_sem_seg_{split}", f"pcontext/{split}/image", f"pcontext/{split}/label")
        for split in ("train", "val")
    ], labelset="pcontext_59", ignore_label=255, gt_ext="png",
        script="prepare_pcontext_sem_seg_59cls.py")


def register_all_pcontext_full(root: str) -> None:
    _register_splits(root, [
        (f"pcontext_full_sem_seg_{split}", f"pcontext_full/{split}/image",
         f"pcontext_full/{split}/label") for split in ("train", "val")
    ], labelset="pcontext_459", ignore_label=65535, gt_ext="tif",
        script="prepare_pcontext_sem_seg_459cls.py")


def register_all_ade20k(root: str) -> None:
    """detectron2's own ``ade20k_sem_seg_*``: its metadata is kept, the loader is checked."""
    _register_splits(root, [
        (f"ade20k_sem_seg_{name}", f"ADEChallengeData2016/images/{split}",
         f"ADEChallengeData2016/annotations_detectron2/{split}")
        for name, split in (("train", "training"), ("val", "validation"))
    ], labelset="ade20k_150", ignore_label=255, gt_ext="png", script="prepare_ade20k_sem_seg.py")


def register_all_ade20k_full(root: str) -> None:
    _register_splits(root, [
        (f"ade20k_full_sem_seg_{name}", f"ADE20K_2021_17_01/images_detectron2/{split}",
         f"ADE20K_2021_17_01/annotations_detectron2/{split}")
        for name, split in (("train", "training"), ("val", "validation"))
    ], labelset="ade20k_847", ignore_label=65535, gt_ext="tif",
        script="prepare_ade20k_full_sem_seg.py")


def register_all_synthetic(root: str) -> None:
    """san_d2's own synthetic scenes, which the quick start generates."""
    from ..synthetic import register_synthetic_dataset

    register_synthetic_dataset(os.path.join(root, "san_synthetic"))


def register_all_benchmarks(root: str) -> None:
    for register in (register_all_coco_stuff, register_all_voc, register_all_pcontext,
                     register_all_pcontext_full, register_all_ade20k, register_all_ade20k_full,
                     register_all_synthetic):
        register(root)


register_all_benchmarks(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))

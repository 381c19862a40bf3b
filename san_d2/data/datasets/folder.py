"""Your own dataset: a folder of images and a folder of label maps, with a class list.

Register it from Python with :func:`register_folder_dataset`, or describe it in a JSON file
and list that file in ``DATASETS.DEFINITIONS`` (what ``san-train`` registers before it runs)::

    {"name": "parts", "classes": ["bolt", "nut", "washer"], "ignore_label": 255,
     "image_ext": "jpg", "label_ext": "png",
     "splits": {"train": {"images": "images/train", "labels": "labels/train"},
                "val": {"images": "images/val", "labels": "labels/val"}}}

registers ``parts_train`` and ``parts_val``; relative folders are relative to the JSON file.
Labels are single-channel PNGs (8 or 16 bit) or TIFFs holding class indices 0..K-1, or the
ignore value; images and labels are paired by file name.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from .sem_seg import register_sem_seg

__all__ = ["register_folder_dataset", "register_dataset_file", "check_label_values"]

_DESCRIPTION_KEYS = {"name", "classes", "ignore_label", "image_ext", "label_ext", "splits",
                     "check_labels"}


def check_label_values(records: Sequence[Dict], num_classes: int, ignore_label: int,
                       dataset_name: str) -> None:
    """Fails naming the label files that hold values outside 0..num_classes-1 and the ignore
    value (reads every label once).

    Raises:
        ValueError: with up to five files and their stray values.
    """
    bad = []
    for record in records:
        with Image.open(record["sem_seg_file_name"]) as image:
            values = np.unique(np.asarray(image))
        stray = values[(values >= num_classes) & (values != ignore_label) | (values < 0)]
        if stray.size:
            bad.append(f"{record['sem_seg_file_name']} ({', '.join(map(str, stray[:5]))})")
    if bad:
        raise ValueError(f"Dataset '{dataset_name}': {len(bad)} label maps hold values that are "
                         f"neither a class index 0..{num_classes - 1} nor the ignore value "
                         f"{ignore_label}, e.g. {'; '.join(bad[:5])}.")


def register_folder_dataset(name: str, image_root: str, label_root: str, classes: Sequence[str], *,
                            ignore_label: int = 255, image_ext: str = "jpg", label_ext: str = "png",
                            check_labels: bool = True) -> None:
    """Registers a folder dataset with detectron2 (records and metadata), checked when it is
    first loaded: missing folders, labels without an image, and (``check_labels``) label
    values outside the class range fail with the file names."""
    classes = [str(c).strip() for c in classes]
    if not classes or not all(classes) or len(set(classes)) != len(classes):
        raise ValueError(f"Dataset '{name}': the class list must hold distinct non-empty names, "
                         f"got {classes!r}.")
    def check_records(records: List[Dict]) -> None:
        check_label_values(records, len(classes), ignore_label, name)

    register_sem_seg(name, image_root, label_root, stuff_classes=classes,
                     ignore_label=ignore_label, gt_ext=label_ext, image_ext=image_ext,
                     prepare_hint=f"the folders given for dataset '{name}'",
                     check_records=check_records if check_labels else None)


def register_dataset_file(path: str) -> List[str]:
    """Registers the splits a dataset description JSON file names (see the module's doc);
    returns the registered names.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    try:
        with open(path, encoding="utf-8") as f:
            description = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"Cannot read dataset description {path}: {e}") from None
    problem = _description_problem(description)
    if problem:
        raise ValueError(f"Dataset description {path}: {problem}")
    folder = os.path.dirname(os.path.abspath(path))
    names = []
    for split, roots in description["splits"].items():
        name = f"{description['name']}_{split}"
        register_folder_dataset(
            name, os.path.join(folder, roots["images"]), os.path.join(folder, roots["labels"]),
            description["classes"], ignore_label=description.get("ignore_label", 255),
            image_ext=description.get("image_ext", "jpg"),
            label_ext=description.get("label_ext", "png"),
            check_labels=description.get("check_labels", True))
        names.append(name)
    return names


def _description_problem(description) -> Optional[str]:
    if not isinstance(description, dict):
        return "expected a JSON object"
    unknown = sorted(set(description) - _DESCRIPTION_KEYS)
    if unknown:
        return f"unknown keys {unknown} (allowed: {sorted(_DESCRIPTION_KEYS)})"
    for key in ("name", "classes", "splits"):
        if key not in description:
            return f"'{key}' is missing"
    splits = description["splits"]
    if not isinstance(splits, dict) or not splits or not all(
            isinstance(r, dict) and {"images", "labels"} <= set(r) for r in splits.values()):
        return "'splits' must map split names to {\"images\": folder, \"labels\": folder}"
    return None

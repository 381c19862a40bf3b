"""The class-name lists the published SAN results were evaluated with (``reference/labelsets``)."""
import json
from functools import lru_cache
from importlib import resources
from typing import Tuple

__all__ = ["LABELSETS", "CLASS_NAME_SETS", "load_labelset", "dataset_class_names"]

LABELSETS = ("coco_stuff_171", "voc_20", "pcontext_59", "ade20k_150", "pcontext_459", "ade20k_847")


@lru_cache(maxsize=None)
def load_labelset(name: str) -> Tuple[str, ...]:
    """Class names in train-id order, exactly as the text encoder receives them."""
    if name not in LABELSETS:
        raise ValueError(f"Unknown label set {name!r}: choose one of {LABELSETS}.")
    text = resources.files("san_d2.data.reference").joinpath("labelsets", f"{name}.json").read_text()
    return tuple(json.loads(text))


# Where mmsegmentation's class names for the zero-shot sets differ from the paper's:
# {label set: {index: mmseg's name}}.
_MMSEG_NAMES = {"pcontext_59": {49: "table"}, "voc_20": {19: "tvmonitor"}}
# DATASETS.CLASS_NAMES -> {label set: {index: name}} replacing the registered names.
CLASS_NAME_SETS = {"paper": {}, "mmseg": _MMSEG_NAMES}


def dataset_class_names(dataset_name: str, name_set: str = "paper") -> Tuple[str, ...]:
    """A registered dataset's class names, as the text encoder receives them: "paper" (the
    registered names) or "mmseg" (mmsegmentation's, for the label sets where they differ)."""
    from detectron2.data import MetadataCatalog

    if name_set not in CLASS_NAME_SETS:
        raise ValueError(f"Unknown DATASETS.CLASS_NAMES {name_set!r}: use one of "
                         f"{sorted(CLASS_NAME_SETS)}.")
    metadata = MetadataCatalog.get(dataset_name)
    names = [name.strip() for name in metadata.stuff_classes]
    for index, name in CLASS_NAME_SETS[name_set].get(metadata.get("labelset", None), {}).items():
        names[index] = name
    return tuple(names)

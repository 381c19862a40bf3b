"""The class-name lists the published SAN results were evaluated with (``reference/labelsets``)."""
import json
from functools import lru_cache
from importlib import resources
from typing import Tuple

__all__ = ["LABELSETS", "load_labelset"]

LABELSETS = ("coco_stuff_171", "voc_20", "pcontext_59", "ade20k_150", "pcontext_459", "ade20k_847")


@lru_cache(maxsize=None)
def load_labelset(name: str) -> Tuple[str, ...]:
    """Class names in train-id order, exactly as the text encoder receives them."""
    if name not in LABELSETS:
        raise ValueError(f"Unknown label set {name!r}: choose one of {LABELSETS}.")
    text = resources.files("san_d2.data.reference").joinpath("labelsets", f"{name}.json").read_text()
    return tuple(json.loads(text))

"""Vocabularies as users type them, and the paper demo's vocabulary expansion."""
from typing import Dict, List, Sequence, Tuple

from ..modeling.ov_classifier import check_vocabulary
from .labelsets import load_labelset

__all__ = ["VOCABULARY_EXPANSIONS", "parse_vocabulary", "expand_vocabulary"]


def _coco_stuff_names(first: int = 0) -> Tuple[str, ...]:
    return load_labelset("coco_stuff_171")[first:]


# Expansion name -> extra class names appended after the user's (the paper's demo pads the
# vocabulary with COCO's names so that pixels of none of the user's classes need not take one).
VOCABULARY_EXPANSIONS: Dict[str, Tuple[str, ...]] = {
    "none": (),
    "coco": _coco_stuff_names(),
    "coco_stuff": _coco_stuff_names(80),  # the 91 stuff classes
}


def parse_vocabulary(text: str) -> List[str]:
    """"cat, dog,grass" -> ["cat", "dog", "grass"].

    Raises:
        ValueError: the text names no class, has an empty name between commas, or names a
            class twice.
    """
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise ValueError("The vocabulary is empty: give class names separated by commas, "
                         "e.g. \"cat,dog,grass\".")
    if not all(names):
        raise ValueError(f"The vocabulary {text!r} has an empty name between commas.")
    return list(check_vocabulary(names))


def expand_vocabulary(names: Sequence[str], expansion: str) -> Tuple[List[str], int]:
    """The user's names followed by the expansion's (names already given are not repeated),
    and the number of the user's names."""
    if expansion not in VOCABULARY_EXPANSIONS:
        raise ValueError(f"Unknown vocabulary expansion {expansion!r}: use one of "
                         f"{sorted(VOCABULARY_EXPANSIONS)}.")
    seen = set(names)
    extra = [name for name in VOCABULARY_EXPANSIONS[expansion] if name not in seen]
    return list(names) + extra, len(names)

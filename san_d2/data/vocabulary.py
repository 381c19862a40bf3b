"""Vocabularies as users write them (typed, or in files, with synonyms), and the paper demo's
vocabulary expansion."""
import json
import os
from typing import Dict, List, Sequence, Tuple

from ..modeling.vocabulary import ClassEntry, check_vocabulary, synonyms
from .labelsets import load_labelset

__all__ = ["VOCABULARY_EXPANSIONS", "parse_vocabulary", "load_vocabulary_file",
           "expand_vocabulary"]


def _coco_stuff_names(first: int = 0) -> Tuple[str, ...]:
    return load_labelset("coco_stuff_171")[first:]


# Expansion name -> extra class names appended after the user's (the paper's demo pads the
# vocabulary with COCO's names so that pixels of none of the user's classes need not take one).
VOCABULARY_EXPANSIONS: Dict[str, Tuple[str, ...]] = {
    "none": (),
    "coco": _coco_stuff_names(),
    "coco_stuff": _coco_stuff_names(80),  # the 91 stuff classes
}


def _split_classes(text: str) -> List[str]:
    if ";" in text or "\n" in text:
        return [part for line in text.splitlines() for part in line.split(";")]
    return text.split(",")


def parse_vocabulary(text: str) -> List[ClassEntry]:
    """A typed vocabulary -> checked classes.

    Commas separate classes ("cat, dog, grass"); when the text has semicolons or line breaks,
    those separate classes and commas separate the synonyms of one class ("black pickup truck,
    pickup truck; blue sky, sky").

    Raises:
        ValueError: the text names no class, has an empty class, or names a class twice.
    """
    synonyms_mode = ";" in text or "\n" in text
    parts = [part.strip() for part in _split_classes(text)]
    if synonyms_mode:
        parts = [part for part in parts if part]  # blank lines and trailing separators
    if not any(parts):
        raise ValueError("The vocabulary is empty: give class names separated by commas, "
                         "e.g. \"cat,dog,grass\".")
    if not all(parts):
        raise ValueError(f"The vocabulary {text!r} has an empty name between commas.")
    if not synonyms_mode:
        return list(check_vocabulary(parts))
    classes = [[name.strip() for name in part.split(",")] for part in parts]
    for part, names in zip(parts, classes):
        if not all(names):
            raise ValueError(f"The class {part!r} has an empty synonym between commas.")
    return list(check_vocabulary(classes))


def load_vocabulary_file(path: os.PathLike) -> List[ClassEntry]:
    """Classes from a file: text, one class per line (commas separate synonyms; blank lines
    and lines starting with # are skipped), or JSON: a list of names or of lists of synonyms,
    or an object {name: [more synonyms]}.

    Raises:
        FileNotFoundError, ValueError: naming the file and what is wrong.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.lower().endswith(".json"):
            data = json.loads(text)
            if isinstance(data, dict):
                data = [[name, *(more if isinstance(more, list) else [more])]
                        for name, more in data.items()]
            return list(check_vocabulary(data))
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        if not lines:
            raise ValueError("it names no class")
        return list(check_vocabulary([[n.strip() for n in line.split(",")] for line in lines]))
    except (ValueError, TypeError) as e:
        raise ValueError(f"Vocabulary file {path}: {e}") from None


def expand_vocabulary(classes: Sequence[ClassEntry], expansion: str) -> Tuple[List[ClassEntry], int]:
    """The user's classes followed by the expansion's (names already given are not repeated),
    and the number of the user's classes."""
    if expansion not in VOCABULARY_EXPANSIONS:
        raise ValueError(f"Unknown vocabulary expansion {expansion!r}: use one of "
                         f"{sorted(VOCABULARY_EXPANSIONS)}.")
    seen = {name for entry in classes for name in synonyms(entry)}
    extra = [name for name in VOCABULARY_EXPANSIONS[expansion] if name not in seen]
    return list(classes) + extra, len(classes)

"""Vocabularies: the classes a call segments into, each one name or a list of synonyms.

A checked vocabulary is a tuple with one entry per class: a stripped name, or a tuple of two or
more stripped names (synonyms, encoded separately and averaged into one class embedding). A
class is reported by its first name. Pure Python: the torch-free runtime and ``san_d2`` share it.
"""
from typing import Sequence, Tuple, Union

__all__ = ["ClassEntry", "check_vocabulary", "class_names", "synonyms"]

ClassEntry = Union[str, Tuple[str, ...]]


def _check_name(name, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} is {name!r}: class names must be non-empty strings.")
    return name.strip()


def _check_class(entry, index: int) -> ClassEntry:
    if isinstance(entry, str):
        return _check_name(entry, f"Vocabulary entry {index}")
    if isinstance(entry, Sequence) and len(entry) > 0:
        names = tuple(_check_name(n, f"Synonym {j} of vocabulary entry {index}")
                      for j, n in enumerate(entry))
        return names[0] if len(names) == 1 else names
    raise ValueError(f"Vocabulary entry {index} is {entry!r}: give a class name or a non-empty "
                     "list of synonyms.")


def synonyms(entry: ClassEntry) -> Tuple[str, ...]:
    """All the names of a checked class entry."""
    return (entry,) if isinstance(entry, str) else entry


def check_vocabulary(classes: Sequence) -> Tuple[ClassEntry, ...]:
    """Strips every name and rejects what would make class ids ambiguous.

    Raises:
        ValueError: for an empty vocabulary, a name that is not a non-empty string, or a name
            given twice (in one class or in two).
    """
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ValueError(f"The vocabulary must be a non-empty list of class names, got {classes!r}.")
    checked = tuple(_check_class(entry, i) for i, entry in enumerate(classes))
    first_seen = {}
    for i, entry in enumerate(checked):
        for name in synonyms(entry):
            if name in first_seen:
                raise ValueError(f"Duplicate class name {name!r} at positions {first_seen[name]} "
                                 f"and {i} of the vocabulary: class ids must name distinct classes.")
            first_seen[name] = i
    return checked


def class_names(vocabulary: Sequence[ClassEntry]) -> Tuple[str, ...]:
    """The name each class is reported by: its first."""
    return tuple(synonyms(entry)[0] for entry in vocabulary)

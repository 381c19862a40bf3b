"""Vocabularies: the classes a call segments into (see :mod:`san_d2_runtime.vocabulary`)."""
from san_d2_runtime.vocabulary import ClassEntry, check_vocabulary, class_names, synonyms

__all__ = ["ClassEntry", "check_vocabulary", "class_names", "synonyms"]

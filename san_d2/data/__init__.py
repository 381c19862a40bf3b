"""Data: the benchmarks' registrations, class lists, prompt templates and training mapper."""
from . import datasets  # noqa: F401  (registers the benchmarks under $DETECTRON2_DATASETS)
from .dataset_mappers import MaskFormerSemanticDatasetMapper, build_train_mapper
from .labelsets import CLASS_NAME_SETS, LABELSETS, dataset_class_names, load_labelset
from .transforms import build_test_resize

__all__ = ["MaskFormerSemanticDatasetMapper", "build_train_mapper", "build_test_resize",
           "LABELSETS", "CLASS_NAME_SETS", "load_labelset", "dataset_class_names"]

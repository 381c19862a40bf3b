"""Data: the benchmarks' registrations, class lists, prompt templates and training mapper."""
from . import datasets  # noqa: F401  (registers the benchmarks under $DETECTRON2_DATASETS)
from .dataset_mappers import MaskFormerSemanticDatasetMapper, build_train_mapper
from .labelsets import LABELSETS, load_labelset

__all__ = ["MaskFormerSemanticDatasetMapper", "build_train_mapper", "LABELSETS", "load_labelset"]

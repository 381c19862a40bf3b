"""ONNX export of SAN with the vocabulary chosen at run time (see docs/deployment.md).

``export_onnx(cfg, output_dir=...)`` writes the image graph, the text graph, CLIP's BPE
vocabulary and a manifest; ``san_d2_runtime.SANRuntime`` runs them without torch.
"""
from .exporter import DEFAULT_OPSET, TOLERANCE, ExportMismatchError, ExportReport, export_onnx
from .graphs import EmbeddingClassifier, ImageGraph, TextGraph

__all__ = ["export_onnx", "ExportReport", "ExportMismatchError", "DEFAULT_OPSET", "TOLERANCE",
           "ImageGraph", "TextGraph", "EmbeddingClassifier"]

"""san_d2_runtime: SAN's exported ONNX graphs on onnxruntime, with a vocabulary typed at run time.

A package of its own beside ``san_d2`` (not ``san_d2.runtime``): importing a subpackage runs
its parent's ``__init__``, and ``san_d2``'s imports torch and detectron2. This one imports only
numpy, Pillow and onnxruntime (and OpenCV for exports that resize as mmsegmentation does).

    from san_d2_runtime import SANRuntime
    result = SANRuntime("export/").predict("photo.jpg", ["cat", "sofa", "floor"])
"""
from .images import read_rgb
from .manifest import FORMAT_VERSION, ExportFolderError, read_manifest
from .runtime import SANRuntime, SegmentationResult
from .tokenizer import ClipTokenizer
from .vocabulary import check_vocabulary

__all__ = ["SANRuntime", "SegmentationResult", "ClipTokenizer", "ExportFolderError",
           "FORMAT_VERSION", "read_manifest", "read_rgb", "check_vocabulary"]

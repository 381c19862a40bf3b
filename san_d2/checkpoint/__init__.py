"""Checkpoints: strict, safe loading of detectron2 and mmsegmentation files, crash-safe saving,
and conversion between the two formats."""
from .checkpointer import SANCheckpointer
from .files import NUMPY_SAFE_GLOBALS, CheckpointError, CheckpointMismatchError, read_torch_file

__all__ = ["SANCheckpointer", "CheckpointError", "CheckpointMismatchError", "NUMPY_SAFE_GLOBALS",
           "read_torch_file"]

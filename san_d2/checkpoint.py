"""Checkpoint loading that copes with torch >= 2.6's ``weights_only`` default."""
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["SANCheckpointer", "NUMPY_SAFE_GLOBALS"]


def _numpy_safe_globals():
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
    dtype_classes = {type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64)}
    return [multiarray.multiarray._reconstruct, multiarray.multiarray.scalar, np.ndarray,
            np.dtype, *dtype_classes]


# What numpy puts in a pickle for its arrays and scalars: data, never code.
NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


class SANCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also loads files holding numpy arrays or scalars.

    torch >= 2.6 unpickles with ``weights_only=True`` by default, and fvcore calls it without
    the argument, so a checkpoint that stores, e.g., the iteration as a numpy integer fails with
    ``UnpicklingError``. numpy's array and scalar types are allow-listed here; anything else
    that is not plain data still fails, as it should for files of unknown origin.
    """

    def _load_file(self, filename: str):
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return super()._load_file(filename)

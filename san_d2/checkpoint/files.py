"""Reading checkpoint files safely: what a file holds, or what it is when it is no checkpoint."""
import os
import pickle
import re
import zipfile
from typing import Optional

import numpy as np
import torch

from . import inert_pickle

__all__ = ["CheckpointError", "CheckpointMismatchError", "NUMPY_SAFE_GLOBALS", "read_torch_file",
           "check_weights_are_tensors"]


class CheckpointError(RuntimeError):
    """A file that is not a checkpoint san_d2 can read; the message says what it is."""


class CheckpointMismatchError(CheckpointError):
    """Weights whose names or shapes do not fit the model."""


def _numpy_safe_globals():
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
    dtype_classes = {type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64)}
    return [multiarray.multiarray._reconstruct, multiarray.multiarray.scalar, np.ndarray,
            np.dtype, *dtype_classes]


# What numpy puts in a pickle for its arrays and scalars: data, never code.
NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


# How files written by torch.save begin: a zip archive, or a pickle (protocol 2 or later).
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def _not_a_checkpoint(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be a torch.save file, or None."""
    with open(filename, "rb") as f:
        head = f.read(16)
    if not head:
        return (f"{filename} is empty (0 bytes), not a checkpoint: an interrupted download, "
                "copy or save?")
    if not head.startswith(_TORCH_FILE_STARTS):
        return (f"{filename} is not a PyTorch checkpoint (it starts with {head!r}); expected a "
                "file written by torch.save, such as the released san_vit_b_16.pth.")
    return None


def _blocked_global(error: Exception) -> Optional[str]:
    """The Python object a weights-only unpickling refused (e.g. "posix.system"), if any."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else None


# Where mmseg's checkpoints come from: what their pickles refer to beside the weights.
_MMENGINE_MODULES = ("mmengine", "mmcv", "mmseg")


def _holds_mmengine_objects(filename: str) -> bool:
    return any(module.split(".")[0] in _MMENGINE_MODULES
               for module, _ in inert_pickle.pickled_globals(filename))


def _load_inert(filename: str):
    """Loads a file holding mmengine objects without mmengine: they come back inert, nothing
    runs."""
    return torch.load(filename, map_location="cpu", weights_only=False,
                      pickle_module=inert_pickle, mmap=zipfile.is_zipfile(filename))


def read_torch_file(filename: str) -> dict:
    """The dict a torch.save file holds, read safely: only tensors, numpy arrays and plain data
    (torch's ``weights_only``), except that the mmengine objects beside mmseg's weights come
    back inert (nothing they name is imported or run); the tensors of such a file are mapped
    from it rather than read into memory, so loading a large mmseg release holds the file's
    pages beside the model only while its weights are copied in.

    Raises:
        CheckpointError: saying what the file is when it is no such dict.
    """
    problem = _not_a_checkpoint(filename) if os.path.isfile(filename) else None
    if problem:
        raise CheckpointError(problem)
    try:
        if _holds_mmengine_objects(filename):
            loaded = _load_inert(filename)
        else:
            with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
                loaded = torch.load(filename, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = _blocked_global(e)
        if blocked is None:
            raise CheckpointError(f"{filename} cannot be unpickled ({e}).") from None
        raise CheckpointError(
            f"{filename} holds Python objects ({blocked}) that san_d2 does not unpickle: only "
            "tensors, numpy arrays and plain data are read, so that a file cannot run code. "
            "Expected a detectron2/SAN checkpoint (a dict with 'model') or an mmsegmentation "
            "one.") from None
    except Exception as e:  # a damaged file fails anywhere in torch's readers
        raise CheckpointError(f"{filename} is truncated or damaged ({type(e).__name__}: {e}); "
                              "expected a checkpoint written by torch.save.") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{filename} holds a {type(loaded).__name__}, not a checkpoint (a "
                              "dict of weights).")
    return loaded


def check_weights_are_tensors(filename: str, weights) -> None:
    if not isinstance(weights, dict):
        raise CheckpointError(f"{filename} holds no weights: expected a dict of tensors under "
                              f"'model' (or a plain state dict), got {type(weights).__name__}.")
    wrong = [(k, type(v).__name__) for k, v in weights.items()
             if not isinstance(v, (torch.Tensor, np.ndarray))]
    if wrong:
        key, kind = wrong[0]
        raise CheckpointError(f"{filename}: {len(wrong)} of its {len(weights)} weights are not "
                              f"tensors or arrays (e.g. {key!r} is a {kind}); expected a state "
                              "dict of tensors.")

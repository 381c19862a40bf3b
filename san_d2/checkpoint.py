"""Checkpoints: strict, safe loading (torch >= 2.6's ``weights_only``) and crash-safe saving."""
import logging
import os
import pickle
import re
from typing import Optional, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .utils.io import atomic_write

__all__ = ["SANCheckpointer", "CheckpointError", "CheckpointMismatchError", "NUMPY_SAFE_GLOBALS"]

logger = logging.getLogger(__name__)


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


def _sample(keys: Sequence[str]) -> str:
    return ", ".join(list(keys)[:6]) + (", ..." if len(keys) > 6 else "")


def describe_mismatch(missing: Sequence[str], unexpected: Sequence[str],
                      wrong_shapes: Sequence[tuple]) -> str:
    """One message naming what does not fit (a few names of each kind)."""
    lines = ["The checkpoint does not fit this model."]
    if missing:
        lines.append(f"{len(missing)} model weights are not in it: {_sample(missing)}.")
    if unexpected:
        lines.append(f"{len(unexpected)} of its weights have no place in the model: "
                     f"{_sample(unexpected)}.")
    if wrong_shapes:
        shapes = [f"{k} {tuple(c)} in the file, {tuple(m)} in the model" for k, c, m in wrong_shapes]
        lines.append(f"{len(wrong_shapes)} weights have another shape: {_sample(shapes)}.")
    lines.append("Check that the config matches the checkpoint (ViT-B/16 vs ViT-L/14 config, "
                 "MODEL.SIDE_ADAPTER.*).")
    return " ".join(lines)


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


def _check_weights_are_tensors(filename: str, weights) -> None:
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


class SANCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that loads strictly and reads numpy values safely.

    * Strict: a checkpoint whose weights do not fit the model (missing, unexpected or of another
      shape) raises :class:`CheckpointMismatchError` naming them, instead of detectron2's
      warning and a partly random model. Entries of the model's ``DERIVED_STATE_KEYS``
      (buffers recomputed from the config) may be absent or of another shape: the model keeps
      its own. ``strict=False`` restores detectron2's behaviour (log and go on).
    * torch >= 2.6 unpickles with ``weights_only=True`` by default, and fvcore calls it without
      the argument, so a checkpoint that stores, e.g., the iteration as a numpy integer fails
      with ``UnpicklingError``. numpy's array and scalar types are allow-listed here; anything
      else that is not plain data still fails, as it should for files of unknown origin.
    """

    def __init__(self, model, save_dir: str = "", *, strict: bool = True, **checkpointables):
        """
        Args:
            model, save_dir, checkpointables: as for ``DetectionCheckpointer``.
            strict: raise on weights that do not fit (else log them, as detectron2 does).
        """
        super().__init__(model, save_dir, **checkpointables)
        self.strict = strict

    def load(self, path: str, checkpointables=None):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"No checkpoint file {path} (MODEL.WEIGHTS or --weights).")
        return super().load(path, checkpointables)

    def _load_file(self, filename: str):
        problem = _not_a_checkpoint(filename) if os.path.isfile(filename) else None
        if problem:
            raise CheckpointError(problem)
        try:
            with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
                loaded = super()._load_file(filename)
        except pickle.UnpicklingError as e:
            blocked = _blocked_global(e)
            if blocked is None:
                raise CheckpointError(f"{filename} cannot be unpickled ({e}).") from None
            raise CheckpointError(
                f"{filename} holds Python objects ({blocked}) that san_d2 does not unpickle: "
                "only tensors, numpy arrays and plain data are read, so that a file cannot run "
                "code. Expected a detectron2/SAN checkpoint (a dict with 'model').") from None
        except Exception as e:  # a damaged file fails anywhere in torch's readers
            raise CheckpointError(f"{filename} is truncated or damaged ({type(e).__name__}: "
                                  f"{e}); expected a checkpoint written by torch.save.") from None
        _check_weights_are_tensors(filename, loaded.get("model"))
        return loaded

    def save(self, name: str, **kwargs) -> None:
        """Saves ``<save_dir>/<name>.pth`` atomically, then points ``last_checkpoint`` at it:
        a run killed meanwhile leaves the previous checkpoint, never a partial file."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(),
                **{key: obj.state_dict() for key, obj in self.checkpointables.items()}, **kwargs}
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {path}")
        with atomic_write(path, remove_leftovers=True) as f:
            torch.save(data, f)
        self.tag_last_checkpoint(os.path.basename(path))

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def _load_model(self, checkpoint):
        derived = set(getattr(self.model, "DERIVED_STATE_KEYS", ()))
        self._drop_derived_of_another_shape(checkpoint["model"], derived)
        incompatible = super()._load_model(checkpoint)
        missing = [k for k in incompatible.missing_keys if k not in derived]
        incompatible.missing_keys[:] = missing
        if self.strict and (missing or incompatible.unexpected_keys
                            or incompatible.incorrect_shapes):
            raise CheckpointMismatchError(describe_mismatch(
                missing, incompatible.unexpected_keys, incompatible.incorrect_shapes))
        return incompatible

    def _drop_derived_of_another_shape(self, weights, derived) -> None:
        model_state = self.model.state_dict()
        for key in derived & set(weights):
            if key in model_state and tuple(weights[key].shape) != tuple(model_state[key].shape):
                logger.info(f"Keeping the model's own {key} {tuple(model_state[key].shape)} "
                            f"(the checkpoint's is {tuple(weights[key].shape)}; it is "
                            "recomputed from the config, not learned).")
                del weights[key]

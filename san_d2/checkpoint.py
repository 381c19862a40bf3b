"""Checkpoint loading: strict by default, safe under torch >= 2.6's ``weights_only`` default."""
import logging
from typing import Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["SANCheckpointer", "CheckpointMismatchError", "NUMPY_SAFE_GLOBALS"]

logger = logging.getLogger(__name__)


class CheckpointMismatchError(RuntimeError):
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

    def _load_file(self, filename: str):
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return super()._load_file(filename)

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

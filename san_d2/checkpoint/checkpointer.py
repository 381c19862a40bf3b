"""SANCheckpointer: strict, safe loading of detectron2 and mmsegmentation files, crash-safe
saving."""
import logging
import os
from typing import Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.io import atomic_write
from . import mmseg
from .files import (CheckpointError, CheckpointMismatchError, check_weights_are_tensors,
                    read_torch_file)

__all__ = ["SANCheckpointer", "describe_mismatch"]

logger = logging.getLogger(__name__)


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


# (blocks, width, patch) of the published CLIPs -> name and the shipped configs of that size.
_KNOWN_CLIPS = {
    (12, 768, 16): ("ViT-B/16", ("san_clip_vit_res4_coco.yaml",
                                 "mmseg/san-vit-b16_coco-stuff164k-640x640.yaml")),
    (24, 1024, 14): ("ViT-L/14", ("san_clip_vit_large_res4_coco.yaml",
                                  "mmseg/san-vit-l14_coco-stuff164k-640x640.yaml")),
}


def _describe_clip(architecture) -> str:
    blocks, width, patch = architecture
    known = _KNOWN_CLIPS.get(tuple(architecture))
    return (f"{blocks} blocks of width {width}, patch {patch}"
            + (f" ({known[0]})" if known else ""))


def _configs_for(architecture) -> str:
    known = _KNOWN_CLIPS.get(tuple(architecture))
    return f", e.g. {' or '.join(known[1])}" if known else ""


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
        if filename.endswith((".pkl", ".pyth")):  # detectron2's model-zoo formats
            return super()._load_file(filename)
        loaded = read_torch_file(filename)
        container = loaded.get("model") if list(loaded) == ["model"] else loaded
        if mmseg.is_mmseg_container(container):
            loaded = self._from_mmseg(filename, container["state_dict"])
        elif "model" not in loaded:  # a plain state dict, as detectron2 takes it
            loaded = {"model": loaded}
        check_weights_are_tensors(filename, loaded.get("model"))
        return loaded

    def _from_mmseg(self, filename: str, weights) -> dict:
        """mmseg's SAN weights under this model's names (fusion layers in its stage order)."""
        if not mmseg.is_mmseg_san(weights):
            first = sorted({name.split(".")[0] + "." for name in weights})[:4]
            raise CheckpointError(
                f"{filename} is an mmsegmentation checkpoint of another model (its weights begin "
                f"with {', '.join(first)}); san_d2 loads mmsegmentation's SAN models, whose "
                "weights are image_encoder., text_encoder. and decode_head.side_adapter_network.")
        stages = mmseg.fusion_stages(self.model.state_dict())
        logger.info(f"Reading {filename} as an mmsegmentation SAN checkpoint.")
        return {"model": mmseg.mmseg_to_san(weights, stages or mmseg.DEFAULT_FUSION_STAGES),
                "__author__": "mmsegmentation"}

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
        # Only the main process saves: temporary files a killed run left behind can go.
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w",
                          remove_leftovers=True) as f:
            f.write(last_filename_basename)

    def _load_model(self, checkpoint):
        self._check_clip_architecture(checkpoint["model"])
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

    def _check_clip_architecture(self, weights) -> None:
        """A SAN file of another CLIP (ViT-B/16 weights, ViT-L/14 config): say which is which."""
        ours = mmseg.clip_architecture(self.model.state_dict())
        theirs = mmseg.clip_architecture(weights)
        if self.strict and ours and theirs and ours != theirs:
            raise CheckpointMismatchError(
                f"The checkpoint holds a SAN whose CLIP is {_describe_clip(theirs)}, but the "
                f"config builds one with {_describe_clip(ours)}: use a config of the "
                f"checkpoint's architecture{_configs_for(theirs)}.")

    def _drop_derived_of_another_shape(self, weights, derived) -> None:
        model_state = self.model.state_dict()
        for key in derived & set(weights):
            if key in model_state and tuple(weights[key].shape) != tuple(model_state[key].shape):
                logger.info(f"Keeping the model's own {key} {tuple(model_state[key].shape)} "
                            f"(the checkpoint's is {tuple(weights[key].shape)}; it is "
                            "recomputed from the config, not learned).")
                del weights[key]

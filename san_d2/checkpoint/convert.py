"""Converting SAN checkpoints between detectron2's (the paper's) format and mmsegmentation's."""
import os
from typing import Dict

import torch

from ..utils.io import atomic_write
from . import mmseg
from .files import CheckpointError, read_torch_file

__all__ = ["FORMATS", "checkpoint_format", "convert_checkpoint"]

FORMATS = ("detectron2", "mmseg")


def _weights_and_format(path: str):
    loaded = read_torch_file(path)
    container = loaded.get("model") if list(loaded) == ["model"] else loaded
    if mmseg.is_mmseg_container(container):
        if not mmseg.is_mmseg_san(container["state_dict"]):
            raise CheckpointError(f"{path} is an mmsegmentation checkpoint, but not of SAN.")
        return container["state_dict"], "mmseg"
    weights = loaded.get("model", loaded)
    if mmseg.clip_architecture(weights) is None:
        raise CheckpointError(f"{path} is not a SAN checkpoint: it has no "
                              "clip_visual_extractor.conv1.weight (detectron2 format) and no "
                              "state_dict of mmsegmentation's SAN.")
    return weights, "detectron2"


def checkpoint_format(path: str) -> str:
    """"detectron2" or "mmseg": the format of a SAN checkpoint file."""
    return _weights_and_format(path)[1]


def convert_checkpoint(source: str, target: str, to: str, *, num_classes: int = 171,
                       no_object_weight: float = 0.1) -> Dict[str, int]:
    """Writes the SAN checkpoint ``source`` in the format ``to`` ("detectron2" or "mmseg").

    Every tensor is kept bit for bit (three change layout: reshaped or transposed). mmseg's
    files lack two buffers that the model recomputes; a detectron2 file gets them back as the
    model makes them, for a training vocabulary of ``num_classes`` and a "no object" weight of
    ``no_object_weight`` (171 and 0.1 for the released models). An mmseg file has mmengine's
    layout (``meta``, ``state_dict``), which mmseg's ``load_checkpoint`` reads.

    Returns:
        The tensor counts read and written.
    Raises:
        ValueError: an unknown format, or a file already in it.
        CheckpointError: a file that is not a SAN checkpoint.
    """
    if to not in FORMATS:
        raise ValueError(f"Unknown checkpoint format {to!r}: use one of {FORMATS}.")
    weights, source_format = _weights_and_format(source)
    if source_format == to:
        raise ValueError(f"{source} is already in {to} format.")
    if to == "mmseg":
        data = mmseg.mmseg_container(mmseg.san_to_mmseg(weights), meta={
            "converted_from": os.path.basename(source), "converted_by": "san_d2"})
        written = data["state_dict"]
    else:
        written = mmseg.mmseg_to_san(weights)
        written.update(mmseg.derived_buffers(written, num_classes, no_object_weight))
        data = {"model": written}
    with atomic_write(target) as f:
        torch.save(data, f)
    return {"read": len(weights), "written": len(written)}

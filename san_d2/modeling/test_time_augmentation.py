"""Test-time augmentation: several scales with and without a horizontal flip.

Two recipes (``TEST.AUG.RECIPE``):

- "detectron2" (the paper's code): the short sides ``TEST.AUG.MIN_SIZES`` (long side capped at
  ``TEST.AUG.MAX_SIZE``) of the test-resized image; the per-class scores are averaged.
- "mmseg" (mmsegmentation's ms+flip): the ratios ``TEST.AUG.RATIOS`` of the original image
  (mmcv's size rounding, OpenCV bilinear); each pass's scores get a softmax over the classes,
  and the softmaxes are averaged.

Every pass is post-processed to the original ``height`` x ``width``; flipped passes are flipped
back before they are combined. A ``labels_only`` record gets the arg-max of the average as
``sem_seg_labels``; the passes themselves need their scores.
"""
import copy
from typing import Dict, Iterator, List, Tuple

import torch
from detectron2.data import detection_utils as utils
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA
from torch import nn

from ..data.transforms import CV2ResizeTransform, mmseg_ratio_size

__all__ = ["SemanticSegmentorWithTTA", "MMSegTTA", "TTA_RECIPES", "build_tta_model"]


class _TestTimeAugmentation(nn.Module):
    """Runs a segmenter on each pass of a record and averages what ``_combine`` makes of the
    passes' scores, in the original frame."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @torch.inference_mode()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        return [self._inference_one(record) for record in batched_inputs]

    def _passes(self, record: Dict) -> Iterator[Tuple[Dict, bool]]:
        """(model input, whether it is flipped) for each pass."""
        raise NotImplementedError

    def _combine(self, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def _inference_one(self, record: Dict) -> Dict[str, torch.Tensor]:
        record = copy.copy(record)
        labels_only = record.pop("labels_only", False)  # the passes' scores are averaged
        record.setdefault("height", record["image"].shape[-2])
        record.setdefault("width", record["image"].shape[-1])
        total, passes = None, 0
        for augmented, flipped in self._passes(record):
            augmented["height"], augmented["width"] = record["height"], record["width"]
            scores = self._combine(self.model([augmented])[0]["sem_seg"])
            scores = scores.flip(dims=[-1]) if flipped else scores
            total = scores if total is None else total + scores
            passes += 1
        scores = total.div_(passes)
        return {"sem_seg_labels": scores.argmax(dim=0)} if labels_only else {"sem_seg": scores}


class SemanticSegmentorWithTTA(_TestTimeAugmentation):
    """detectron2's recipe: ``TEST.AUG`` short sides (and flips), scores averaged."""

    def __init__(self, cfg, model: nn.Module):
        super().__init__(model)
        self.tta_mapper = DatasetMapperTTA(cfg)

    def _passes(self, record: Dict) -> Iterator[Tuple[Dict, bool]]:
        for augmented in self.tta_mapper(record):
            flipped = any(isinstance(t, HFlipTransform) for t in augmented.pop("transforms"))
            yield augmented, flipped


class MMSegTTA(_TestTimeAugmentation):
    """mmsegmentation's ms+flip: ratios of the original image, class softmaxes averaged."""

    def __init__(self, cfg, model: nn.Module):
        super().__init__(model)
        self.ratios = tuple(cfg.TEST.AUG.RATIOS)
        self.flip = cfg.TEST.AUG.FLIP
        self.image_format = cfg.INPUT.FORMAT

    def _original_image(self, record: Dict):
        """(H, W, C) uint8: the file as read, or the given image if there is no file."""
        if "file_name" in record:
            return utils.read_image(record["file_name"], format=self.image_format)
        return record["image"].permute(1, 2, 0).numpy()

    def _passes(self, record: Dict) -> Iterator[Tuple[Dict, bool]]:
        original = self._original_image(record)
        height, width = original.shape[:2]
        for ratio in self.ratios:
            new_h, new_w = mmseg_ratio_size(height, width, ratio)
            resized = CV2ResizeTransform(height, width, new_h, new_w).apply_image(original)
            for flipped in (False, True) if self.flip else (False,):
                image = resized[:, ::-1] if flipped else resized
                tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
                yield {**{k: v for k, v in record.items() if k != "image"}, "image": tensor}, flipped

    def _combine(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=0)


# TEST.AUG.RECIPE -> test-time augmentation wrapper of a model.
TTA_RECIPES = {"detectron2": SemanticSegmentorWithTTA, "mmseg": MMSegTTA}


def build_tta_model(cfg, model: nn.Module) -> nn.Module:
    """``model`` wrapped in the TTA recipe named by ``cfg.TEST.AUG.RECIPE``."""
    recipe = cfg.TEST.AUG.RECIPE
    if recipe not in TTA_RECIPES:
        raise ValueError(f"Unknown TEST.AUG.RECIPE {recipe!r}: use one of {sorted(TTA_RECIPES)}.")
    return TTA_RECIPES[recipe](cfg, model)

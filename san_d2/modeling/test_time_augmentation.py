"""Test-time augmentation: several scales and a horizontal flip, scores averaged."""
import copy
from typing import Dict, List

import torch
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA
from torch import nn

__all__ = ["SemanticSegmentorWithTTA"]


class SemanticSegmentorWithTTA(nn.Module):
    """Runs a segmenter on ``TEST.AUG`` scales (and flips) and averages per-class scores.

    Every pass asks the model for scores at the original ``height`` x ``width``; flipped passes
    are flipped back before averaging.
    """

    def __init__(self, cfg, model: nn.Module):
        super().__init__()
        self.model = model
        self.tta_mapper = DatasetMapperTTA(cfg)

    @torch.inference_mode()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        return [self._inference_one(record) for record in batched_inputs]

    def _inference_one(self, record: Dict) -> Dict[str, torch.Tensor]:
        record = copy.copy(record)
        record.setdefault("height", record["image"].shape[-2])
        record.setdefault("width", record["image"].shape[-1])
        total, passes = None, 0
        for augmented in self.tta_mapper(record):
            augmented["height"], augmented["width"] = record["height"], record["width"]
            flipped = any(isinstance(t, HFlipTransform) for t in augmented.pop("transforms"))
            scores = self.model([augmented])[0]["sem_seg"]
            scores = scores.flip(dims=[-1]) if flipped else scores
            total = scores if total is None else total + scores
            passes += 1
        return {"sem_seg": total / passes}

"""SAN's training losses: classification of matched proposals and point-sampled mask losses."""
from typing import Dict, List, Sequence

import torch
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from detectron2.utils.comm import get_world_size
from torch import nn
from torch.nn import functional as F

from .matcher import HungarianMatcher

__all__ = ["SetCriterion"]


def _uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """-|logit| of (N, 1, P) point logits: highest where the mask is least certain."""
    return -logits.abs()


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


class SetCriterion(nn.Module):
    """Hungarian-matched losses over the main and auxiliary outputs, weighted.

    State dict: ``empty_weight`` (K_train + 1), the cross-entropy class weights.
    """

    def __init__(self, *, num_classes: int, matcher: HungarianMatcher, weight_dict: Dict[str, float],
                 no_object_weight: float, num_points: int, oversample_ratio: float,
                 importance_sample_ratio: float):
        """
        Args:
            num_classes: size of the training vocabulary K_train.
            matcher: assigns proposals to targets.
            weight_dict: weights of "loss_ce", "loss_mask", "loss_dice" (also for aux outputs).
            no_object_weight: cross-entropy weight of the "no object" class.
            num_points: points sampled per mask for the mask losses.
            oversample_ratio: candidate points per sampled point.
            importance_sample_ratio: share of points chosen by uncertainty.
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def forward(self, outputs: Sequence[Dict[str, torch.Tensor]],
                targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: per decoded stage, earliest first, ``pred_logits`` (B, Q, K + 1) and
                ``pred_masks`` (B, Q, h, w); the last is the main output.
            targets: per image ``labels`` (T,) int64 and ``masks`` (T, H, W) float/bool.
        Returns:
            Weighted losses; auxiliary ones suffixed ``_0``, ``_1``, ... earliest first.
        """
        if outputs[-1]["pred_logits"].shape[-1] != self.num_classes + 1:
            raise ValueError(f"Training with a {outputs[-1]['pred_logits'].shape[-1] - 1}-class "
                             f"vocabulary but MODEL.SAN.NUM_CLASSES is {self.num_classes}.")
        num_masks = self._num_masks(targets, outputs[-1]["pred_logits"].device)
        losses = {}
        for i, output in enumerate(outputs):
            suffix = "" if i == len(outputs) - 1 else f"_{i}"
            indices = self.matcher(output["pred_logits"], output["pred_masks"], targets)
            stage_losses = {**self.loss_labels(output["pred_logits"], targets, indices),
                            **self.loss_masks(output["pred_masks"], targets, indices, num_masks)}
            losses.update({k + suffix: v * self.weight_dict[k] for k, v in stage_losses.items()})
        return losses

    @staticmethod
    def _num_masks(targets, device) -> float:
        num_masks = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if get_world_size() > 1:
            torch.distributed.all_reduce(num_masks)
        return torch.clamp(num_masks / get_world_size(), min=1).item()

    def loss_labels(self, logits, targets, indices) -> Dict[str, torch.Tensor]:
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=logits.device)
        batch_idx, query_idx = self._matched_queries(indices)
        target_classes[batch_idx, query_idx] = torch.cat(
            [t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)]).to(logits.device)
        loss = F.cross_entropy(logits.float().transpose(1, 2), target_classes, self.empty_weight)
        return {"loss_ce": loss}

    def loss_masks(self, pred_masks, targets, indices, num_masks) -> Dict[str, torch.Tensor]:
        batch_idx, query_idx = self._matched_queries(indices)
        src = pred_masks[batch_idx, query_idx][:, None].float()  # (N, 1, h, w)
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)])
        tgt = tgt[:, None].to(src.dtype)  # (N, 1, H, W)
        if len(src) == 0:
            zero = pred_masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src, _uncertainty, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio)
            point_labels = point_sample(tgt, coords, align_corners=False)[:, 0]
        point_logits = point_sample(src, coords, align_corners=False)[:, 0]
        return {"loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
                "loss_dice": dice_loss(point_logits, point_labels, num_masks)}

    @staticmethod
    def _matched_queries(indices):
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        query_idx = torch.cat([src for src, _ in indices])
        return batch_idx, query_idx

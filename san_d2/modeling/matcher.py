"""Hungarian matching of mask proposals to ground-truth class masks."""
from typing import Dict, List, Tuple

import torch
from detectron2.projects.point_rend.point_features import point_sample
from torch import nn

__all__ = ["HungarianMatcher", "pairwise_sigmoid_ce", "pairwise_dice"]


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction against every target: (Q, P) x (T, P) -> (Q, T)."""
    pos = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits),
                                                         reduction="none")
    neg = nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits),
                                                         reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction against every target: (Q, P) x (T, P) -> (Q, T)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising class, BCE and dice costs on shared random points."""

    def __init__(self, *, cost_class: float, cost_mask: float, cost_dice: float, num_points: int):
        """
        Args:
            cost_class: weight of -p(target class).
            cost_mask: weight of the sigmoid BCE cost.
            cost_dice: weight of the dice cost.
            num_points: points sampled per image, shared by all its masks.
        """
        super().__init__()
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                targets: List[Dict[str, torch.Tensor]]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            pred_logits: (B, Q, K + 1).
            pred_masks: (B, Q, h, w) logits.
            targets: per image ``labels`` (T,) and ``masks`` (T, H, W).
        Returns:
            Per image, (query indices, target indices) as int64 tensors of equal length.
        """
        from scipy.optimize import linear_sum_assignment  # training only: not at import

        indices = []
        for cost in self.cost_matrices(pred_logits, pred_masks, targets):
            rows, cols = linear_sum_assignment(cost.cpu())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    @torch.no_grad()
    def cost_matrices(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                      targets: List[Dict[str, torch.Tensor]]) -> List[torch.Tensor]:
        """Per image the (Q, T) float32 matching cost.

        Computed with autocast off: under float16 the BCE sums over thousands of points
        overflow to ``inf``, and an all-``inf`` column makes the assignment infeasible.
        """
        costs = []
        with torch.autocast(pred_masks.device.type, enabled=False):
            for b, target in enumerate(targets):
                costs.append(self._cost(pred_logits[b].float(), pred_masks[b].float(),
                                        target["labels"], target["masks"]))
        return costs

    def _cost(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
              target_masks: torch.Tensor) -> torch.Tensor:
        """(Q, K + 1) logits, (Q, h, w) mask logits, T targets -> (Q, T)."""
        if len(labels) == 0:
            return logits.new_zeros((logits.shape[0], 0))
        cost_class = -logits.softmax(-1)[:, labels]
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        target_points = point_sample(target_masks[:, None].float(),
                                     coords.expand(len(target_masks), -1, -1),
                                     align_corners=False)[:, 0]
        pred_points = point_sample(masks[:, None], coords.expand(masks.shape[0], -1, -1),
                                   align_corners=False)[:, 0]
        return (self.cost_mask * pairwise_sigmoid_ce(pred_points, target_points)
                + self.cost_class * cost_class
                + self.cost_dice * pairwise_dice(pred_points, target_points))

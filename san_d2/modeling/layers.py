"""Small layers shared by CLIP's parts and the side adapter."""
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ChannelLayerNorm", "resize_grid_pos_embed"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (biased variance).

    Not an ``nn.LayerNorm``, as in the paper's code, whose optimiser therefore gives its
    parameters the ordinary weight decay rather than ``SOLVER.WEIGHT_DECAY_NORM``.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def resize_grid_pos_embed(pos_embed: torch.Tensor, grid: Tuple[int, int],
                          target: Tuple[int, int], num_prefix: int) -> torch.Tensor:
    """Resizes the grid rows of a positional embedding (bicubic), keeping ``num_prefix``
    leading rows.

    Args:
        pos_embed: (num_prefix + gh * gw, C).
        grid: (gh, gw) of the pre-trained embedding.
        target: (h, w) wanted.
    Returns:
        (num_prefix + h * w, C); the input itself when the grid already matches.
    """
    if tuple(grid) == tuple(target):
        return pos_embed
    prefix, rows = pos_embed[:num_prefix], pos_embed[num_prefix:]
    channels = rows.shape[-1]
    rows = rows.reshape(1, grid[0], grid[1], channels).permute(0, 3, 1, 2)
    rows = F.interpolate(rows, size=target, mode="bicubic", align_corners=False)
    return torch.cat([prefix, rows.permute(0, 2, 3, 1).reshape(-1, channels)], dim=0)

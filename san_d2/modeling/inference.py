"""What SAN's inference can return beside the per-class scores: rejected ("unknown") pixels,
the mask proposals, and the tiling of images too large for one pass.

With Q proposals, class probabilities p_q(k) (k = 1..K, and "no object") and mask
probabilities m_q(x) at pixel x, SAN's score of class k is S_k(x) = sum_q p_q(k) m_q(x), and
the "no object" mass of the proposals covering x is B(x) = sum_q p_q(no object) m_q(x).
"""
from typing import List, Optional, Tuple

import torch

__all__ = ["rejected_pixels", "window_boxes"]


def rejected_pixels(scores: torch.Tensor, background: Optional[torch.Tensor], *,
                    threshold: float, if_background: bool) -> torch.Tensor:
    """(H, W) bool: pixels labelled "unknown" for (K, H, W) scores S and (H, W) background B.

    A pixel is unknown when its best class score max_k S_k(x) is below ``threshold``, or (with
    ``if_background``) when B(x) is at least max_k S_k(x): the proposals covering it say "none
    of these" more than they name any class.
    """
    best = scores.max(dim=0).values
    unknown = best < threshold
    if if_background:
        unknown |= background >= best
    return unknown


def _starts(length: int, size: int, stride: int) -> List[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


def window_boxes(height: int, width: int, size: int, stride: int) -> List[Tuple[int, int, int, int]]:
    """(top, left, bottom, right) of ``size`` x ``size`` windows every ``stride`` pixels that
    cover a height x width image; the last row and column of windows end at its border."""
    return [(top, left, min(top + size, height), min(left + size, width))
            for top in _starts(height, size, stride) for left in _starts(width, size, stride)]

"""mmsegmentation's test-time image sizes (mmcv's rounding), in pure Python: ``san_d2``'s
mmseg resize and the runtime's share them."""
from typing import Tuple

__all__ = ["mmcv_rescale_size", "mmseg_shortest_edge_size", "mmseg_ratio_size"]


def mmcv_rescale_size(width: int, height: int, scale: Tuple[float, float]) -> Tuple[int, int]:
    """mmcv's ``rescale_size`` with ``keep_ratio``: (new width, new height) that fit the long
    side into max(scale) and the short side into min(scale)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def mmseg_shortest_edge_size(height: int, width: int, short_edge: int,
                             max_size: int) -> Tuple[int, int]:
    """mmseg's ``ResizeShortestEdge`` followed by mmcv's ``Resize(keep_ratio=True)``: the short
    side to ``short_edge``, the long side capped at ``max_size``; returns (height, width)."""
    scale = short_edge / min(height, width)
    new_h, new_w = (short_edge, scale * width) if height < width else (scale * height, short_edge)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    target = (int(new_w + 0.5), int(new_h + 0.5))  # (w, h), as mmseg hands it to Resize
    width_out, height_out = mmcv_rescale_size(width, height, target)
    return height_out, width_out


def mmseg_ratio_size(height: int, width: int, ratio: float) -> Tuple[int, int]:
    """mmcv's ``Resize(scale_factor=ratio, keep_ratio=True)`` (mmseg's multi-scale test):
    returns (height, width)."""
    target = (int(width * ratio + 0.5), int(height * ratio + 0.5))
    width_out, height_out = mmcv_rescale_size(width, height, target)
    return height_out, width_out

"""Test-time resizing: detectron2's (the paper's code) or mmsegmentation's.

The two agree on the size rule up to rounding but resample differently: detectron2 resizes with
PIL's bilinear filter (which anti-aliases when shrinking), mmseg with OpenCV's ``INTER_LINEAR``
on the uint8 image, after recomputing the size with mmcv's ``rescale_size``.
"""
from typing import Callable, Dict

import cv2
import numpy as np
from detectron2.data import transforms as T

from san_d2_runtime.sizes import mmcv_rescale_size, mmseg_ratio_size, mmseg_shortest_edge_size

__all__ = ["CV2ResizeTransform", "MMSegResizeShortestEdge", "mmseg_shortest_edge_size",
           "mmseg_ratio_size", "mmcv_rescale_size", "TEST_RESIZES", "build_test_resize"]


class CV2ResizeTransform(T.Transform):
    """Resizes images with OpenCV's bilinear ``INTER_LINEAR`` (labels: nearest)."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return cv2.resize(segmentation, (self.new_w, self.new_h), interpolation=cv2.INTER_NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords

    def inverse(self) -> T.Transform:
        return CV2ResizeTransform(self.new_h, self.new_w, self.h, self.w)


class MMSegResizeShortestEdge(T.Augmentation):
    """mmseg's test resize: :func:`mmseg_shortest_edge_size`, then OpenCV bilinear."""

    def __init__(self, short_edge_length: int, max_size: int):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        new_h, new_w = mmseg_shortest_edge_size(h, w, self.short_edge_length, self.max_size)
        return CV2ResizeTransform(h, w, new_h, new_w)


def _detectron2_resize(cfg) -> T.Augmentation:
    return T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")


def _mmseg_resize(cfg) -> T.Augmentation:
    return MMSegResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)


# INPUT.TEST_RESIZE -> the test-time resize built from a config.
TEST_RESIZES: Dict[str, Callable] = {"detectron2": _detectron2_resize, "mmseg": _mmseg_resize}


def build_test_resize(cfg) -> T.Augmentation:
    """The test-time resize named by ``cfg.INPUT.TEST_RESIZE``."""
    name = cfg.INPUT.TEST_RESIZE
    if name not in TEST_RESIZES:
        raise ValueError(f"Unknown INPUT.TEST_RESIZE {name!r}: use one of {sorted(TEST_RESIZES)}.")
    return TEST_RESIZES[name](cfg)

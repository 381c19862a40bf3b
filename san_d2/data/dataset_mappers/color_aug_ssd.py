"""SSD-style photometric augmentation (brightness, contrast, saturation, hue)."""
import cv2
import numpy as np
from detectron2.data.transforms import Transform

__all__ = ["ColorAugSSDTransform"]


def _affine(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(image.astype(np.float64) * alpha + beta, 0, 255).astype(np.uint8)


class ColorAugSSDTransform(Transform):
    """Random photometric distortion of a uint8 image; geometry and labels are untouched.

    Brightness (+-``brightness_delta``), then either contrast -> saturation -> hue or
    saturation -> hue -> contrast; each step happens with probability 1/2. Works in BGR with
    OpenCV's HSV (hue in 0..179). Draws from numpy's global generator, like detectron2's
    augmentations, so seeding numpy makes it repeatable.
    """

    def __init__(self, img_format: str, brightness_delta: int = 32, contrast_low: float = 0.5,
                 contrast_high: float = 1.5, saturation_low: float = 0.5,
                 saturation_high: float = 1.5, hue_delta: int = 18):
        super().__init__()
        if img_format not in ("BGR", "RGB"):
            raise ValueError(f"ColorAugSSDTransform needs BGR or RGB images, not {img_format}.")
        self._set_attributes(locals())

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self):
        raise NotImplementedError("A random photometric distortion has no inverse.")

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        bgr = img[:, :, ::-1] if self.img_format == "RGB" else img
        bgr = np.ascontiguousarray(bgr)
        bgr = self._brightness(bgr)
        steps = ((self._contrast, self._saturation, self._hue) if np.random.randint(2)
                 else (self._saturation, self._hue, self._contrast))
        for step in steps:
            bgr = step(bgr)
        return np.ascontiguousarray(bgr[:, :, ::-1]) if self.img_format == "RGB" else bgr

    def _brightness(self, img):
        if np.random.randint(2):
            return _affine(img, beta=np.random.uniform(-self.brightness_delta, self.brightness_delta))
        return img

    def _contrast(self, img):
        if np.random.randint(2):
            return _affine(img, alpha=np.random.uniform(self.contrast_low, self.contrast_high))
        return img

    def _saturation(self, img):
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = _affine(hsv[:, :, 1],
                                   alpha=np.random.uniform(self.saturation_low, self.saturation_high))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def _hue(self, img):
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta)
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + shift) % 180).astype(np.uint8)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

"""Pictures in, the image graph's input out: reading, test-time resize, normalisation, padding.

Each step computes what san_d2 does before its networks (``SANPredictor`` and ``SAN``):
detectron2's ``ResizeShortestEdge`` (PIL bilinear) or mmsegmentation's resize (OpenCV bilinear
with mmcv's size rounding), per ``INPUT.TEST_RESIZE``; ``(x - mean) / std``; zero padding to the
size divisibility.
"""
import os
from typing import Any, Dict, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .sizes import mmseg_shortest_edge_size

__all__ = ["ImageInput", "read_rgb", "resized_size", "resize", "network_input"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

# Single-channel Pillow modes of 16-bit pictures, and of 32-bit integer ones (16-bit values).
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _to_eight_bits(values: np.ndarray, what: str) -> np.ndarray:
    """16-bit values to 8 bits as value / 257, rounded (65535 -> 255)."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 65535:
        raise ValueError(f"{what} holds values {low}..{high}, outside 0..65535: give an 8- or "
                         "16-bit picture.")
    return np.rint(values / 257.0).astype(np.uint8)


def _rgb_from_array(array: np.ndarray, what: str) -> np.ndarray:
    wide = array.dtype == np.uint16 or (array.dtype == np.int32 and array.ndim == 2)
    pixels = _to_eight_bits(array, what) if wide else array
    if pixels.dtype != np.uint8:
        raise ValueError(f"{what}: give uint8 or 16-bit values, not {pixels.dtype}.")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    elif not (pixels.ndim == 3 and pixels.shape[2] in (3, 4)):
        raise ValueError(f"{what}: the shape must be (H, W), (H, W, 3) or (H, W, 4), not "
                         f"{pixels.shape}.")
    if 0 in pixels.shape[:2]:
        raise ValueError(f"{what} has no pixels ({pixels.shape[1]}x{pixels.shape[0]}).")
    return np.ascontiguousarray(pixels[..., :3])


def _rgb_from_pil(picture: Image.Image, what: str) -> np.ndarray:
    picture = ImageOps.exif_transpose(picture)
    if picture.mode == "F":
        raise ValueError(f"{what} holds 32-bit floating-point values: give an 8- or 16-bit "
                         "picture.")
    if picture.mode not in _WIDE_MODES:
        picture = picture.convert("RGB")
    return _rgb_from_array(np.asarray(picture), what)


def _read_file(path: os.PathLike) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            return _rgb_from_pil(picture, str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"No image file at {path}.") from None
    except Image.DecompressionBombError as e:
        reason = (f"is too large to open safely ({e}): shrink it, or raise "
                  "PIL.Image.MAX_IMAGE_PIXELS for files you trust")
    except (UnidentifiedImageError, OSError) as e:
        reason = f"cannot be read as an image: {e}"
    raise ValueError(f"{path} {reason}.")


def read_rgb(image: ImageInput) -> np.ndarray:
    """A path (EXIF orientation applied), PIL image or array ((H, W) grey, (H, W, 3) RGB or
    (H, W, 4) RGBA; uint8 or 16-bit, brought to 8 bits as value / 257) -> (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: no file at the path.
        ValueError: a file that is no picture or too large to open safely, an empty picture,
            or an array of another shape or type.
        TypeError: another kind of input.
    """
    readers = ((np.ndarray, lambda a: _rgb_from_array(a, "the image array")),
               (Image.Image, lambda p: _rgb_from_pil(p, "the image")),
               ((str, os.PathLike), _read_file))
    for kind, reader in readers:
        if isinstance(image, kind):
            return reader(image)
    raise TypeError(f"Cannot segment a {type(image).__name__}: give a path, a PIL image or a "
                    "numpy array.")


def _detectron2_size(height: int, width: int, short: int, longest: int) -> Tuple[int, int]:
    """detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = short / min(height, width)
    size = [short, scale * width] if height < width else [scale * height, short]
    if max(size) > longest:
        shrink = longest / max(size)
        size = [s * shrink for s in size]
    return int(size[0] + 0.5), int(size[1] + 0.5)


_SIZE_RULES = {"detectron2": _detectron2_size, "mmseg": mmseg_shortest_edge_size}


def resized_size(height: int, width: int, rule: Dict[str, Any]) -> Tuple[int, int]:
    """(height, width) after the manifest's resize rule (``min_size_test`` 0: no resize)."""
    if rule["min_size_test"] == 0:
        return height, width
    return _SIZE_RULES[rule["rule"]](height, width, rule["min_size_test"], rule["max_size_test"])


def resize(rgb: np.ndarray, rule: Dict[str, Any]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 by the manifest's rule and resampling."""
    if rule["rule"] not in _SIZE_RULES:
        raise ValueError(f"Unknown resize rule {rule['rule']!r} in the manifest: this runtime "
                         f"knows {sorted(_SIZE_RULES)}.")
    if rule["min_size_test"] == 0:
        return rgb
    height, width = resized_size(*rgb.shape[:2], rule)
    if rule["rule"] == "detectron2":
        return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    try:
        import cv2
    except ImportError:
        raise ImportError("This export resizes as mmsegmentation does (INPUT.TEST_RESIZE mmseg), "
                          "with OpenCV: pip install opencv-python-headless.") from None
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def network_input(image: np.ndarray, preprocessing: Dict[str, Any]) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (1, 3, h_pad, w_pad) float32: in the model's channel order,
    ``(x - mean) / std``, then zeros to the next multiple of the size divisibility."""
    if preprocessing["input_format"] == "BGR":
        image = image[..., ::-1]
    mean = np.asarray(preprocessing["pixel_mean"], dtype=np.float32)
    std = np.asarray(preprocessing["pixel_std"], dtype=np.float32)
    normalised = (image.astype(np.float32) - mean) / std
    divisor = max(int(preprocessing["size_divisibility"]), 1)
    height, width = image.shape[:2]
    padded = np.zeros((1, 3, -(-height // divisor) * divisor, -(-width // divisor) * divisor),
                      dtype=np.float32)
    padded[0, :, :height, :width] = normalised.transpose(2, 0, 1)
    return padded

"""What the web app shows for a request, computed without the web framework (and tested so)."""
import io
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from ..data.vocabulary import expand_vocabulary, parse_vocabulary
from ..modeling.vocabulary import class_names
from .visualization import (UNKNOWN_COLOR, UNKNOWN_NAME, class_colors, draw_segmentation,
                            readable_scale)

__all__ = ["MAX_UPLOAD_SIDE", "AppAnswer", "fit_upload", "label_png", "color_label_map", "answer"]

# Uploads whose longest side is larger are resized to it before segmentation (CPU time and
# memory grow with the picture); the page says so.
MAX_UPLOAD_SIDE = 1600


@dataclass
class AppAnswer:
    """One request's results: the overlay and the plain colour label map (RGB arrays), the
    table rows (class, share in %), the label PNG's bytes, and a notice for the page."""

    overlay: np.ndarray
    label_map: np.ndarray
    table: List[Tuple[str, float]]
    label_png: bytes
    notice: str


def fit_upload(image: np.ndarray, max_side: int = MAX_UPLOAD_SIDE) -> Tuple[np.ndarray, str]:
    """The picture, shrunk (area filter) when its longest side exceeds ``max_side``, and a
    notice saying so ("" when it was kept)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, ""
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized, (f"The picture ({width}x{height}) was resized to {size[0]}x{size[1]} "
                     f"(longest side {max_side}) before segmentation.")


def label_png(class_map: np.ndarray, num_classes: int) -> bytes:
    """A PNG of the class indices (8 bit, or 16 bit beyond 255 classes); pixels of no class
    (unknown, or a vocabulary expansion's) are 255 (65535)."""
    sixteen = num_classes > 255
    ignore = 65535 if sixteen else 255
    labels = np.where((class_map >= 0) & (class_map < num_classes), class_map, ignore)
    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint16 if sixteen else np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def color_label_map(class_map: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The label map alone, each class in its drawing colour (unknown grey, others white),
    scaled up like the drawings."""
    colors = np.array([*class_colors(names), UNKNOWN_COLOR, (255, 255, 255)], np.uint8)
    index = np.where(class_map < 0, len(names), np.minimum(class_map, len(names) + 1))
    image = colors[index]
    scale = readable_scale(*class_map.shape)
    return np.kron(image, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else image


def answer(predictor, image: np.ndarray, vocabulary_text: str, expansion: str = "none",
           unknown_threshold: Optional[float] = None,
           max_side: int = MAX_UPLOAD_SIDE) -> AppAnswer:
    """Segments an uploaded picture with a typed vocabulary, as the app shows it.

    Raises:
        ValueError: an empty or malformed vocabulary (the page shows the message).
    """
    classes, num_user = expand_vocabulary(parse_vocabulary(vocabulary_text), expansion)
    image, notice = fit_upload(image, max_side)
    result = predictor.predict(image, classes, unknown_threshold=unknown_threshold,
                               scores=False)
    names = class_names(classes)
    shares = result.pixel_shares()
    table = [(name, round(100 * share, 2)) for name, share in shares.items()
             if name == UNKNOWN_NAME or names.index(name) < num_user]
    other = sum(share for name, share in shares.items()
                if name != UNKNOWN_NAME and names.index(name) >= num_user)
    if other:
        table.append(("other", round(100 * other, 2)))
    user_map = np.where(result.class_map >= num_user, num_user + 1, result.class_map)
    return AppAnswer(
        overlay=draw_segmentation(image, result.class_map, names, num_user, legend=True),
        label_map=color_label_map(user_map, names[:num_user]),
        table=table,
        label_png=label_png(result.class_map, len(names)),
        notice=notice)

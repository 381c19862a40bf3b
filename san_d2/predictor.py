"""SANPredictor: segment one picture with any vocabulary."""
import logging
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from PIL import Image, ImageOps, UnidentifiedImageError

from .checkpoint import SANCheckpointer
from .config import get_san_cfg
from .data.transforms import build_test_resize
from .modeling.ov_classifier import check_vocabulary
from .utils import fall_back_to_cpu_without_cuda

logger = logging.getLogger(__name__)

__all__ = ["SANPredictor", "SegmentationResult", "load_rgb_image"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclass
class SegmentationResult:
    """What :meth:`SANPredictor.predict` returns.

    Attributes:
        class_map: (H, W) int64 index into ``vocabulary`` per pixel.
        scores: (K, H, W) float32 per-class scores (sums over proposals of class x mask
            probabilities).
        vocabulary: the K class names, stripped.
    """

    class_map: np.ndarray
    scores: torch.Tensor
    vocabulary: Tuple[str, ...]

    def pixel_shares(self) -> dict:
        """{class name: share of the pixels} for the classes present, largest first."""
        counts = np.bincount(self.class_map.ravel(), minlength=len(self.vocabulary))
        order = np.argsort(-counts, kind="stable")
        return {self.vocabulary[i]: counts[i] / self.class_map.size for i in order if counts[i]}

    def describe(self, num_named: Optional[int] = None) -> str:
        """"sky 52.0%, sofa 31.0%, other 17.0%": the classes present, largest first; classes
        from index ``num_named`` on (a vocabulary expansion) are summed up as "other"."""
        num_named = len(self.vocabulary) if num_named is None else num_named
        named = {name: i < num_named for i, name in enumerate(self.vocabulary)}
        shares = self.pixel_shares()
        parts = [f"{name} {100 * share:.1f}%" for name, share in shares.items() if named[name]]
        other = sum(share for name, share in shares.items() if not named[name])
        if other:
            parts.append(f"other {100 * other:.1f}%")
        return ", ".join(parts)


# Pillow modes of single-channel 16-bit pictures (PNG, TIFF), and of 32-bit integer ones that
# usually hold 16-bit values.
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _sixteen_to_eight_bit(values: np.ndarray, source: str) -> np.ndarray:
    """0..65535 -> 0..255 (x / 257, rounded), so that white stays white."""
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{source} holds values {values.min()}..{values.max()}, outside the "
                         "16-bit range 0..65535: save it as an 8- or 16-bit picture.")
    return np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint16 or (array.dtype == np.int32 and array.ndim == 2):
        array = _sixteen_to_eight_bit(array, source)
    if array.dtype != np.uint8:
        raise ValueError(f"{source}: image arrays must be uint8 (or 16-bit), got {array.dtype}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        rgb = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        rgb = np.ascontiguousarray(array[:, :, :3])
    else:
        raise ValueError(f"{source}: image arrays must be (H, W), (H, W, 3) or (H, W, 4), got "
                         f"{array.shape}.")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{source} is empty ({rgb.shape[1]}x{rgb.shape[0]} pixels).")
    return rgb


def _pil_to_rgb(image: Image.Image, source: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        return _array_to_rgb(np.asarray(image), source)
    if image.mode == "F":
        raise ValueError(f"{source} is a 32-bit floating-point picture: save it as an 8- or "
                         "16-bit picture.")
    return _array_to_rgb(np.asarray(image.convert("RGB")), source)


def load_rgb_image(image: ImageInput) -> np.ndarray:
    """Any picture -> (H, W, 3) uint8 RGB.

    Accepts a path (EXIF rotation applied), a PIL image, or an array (H, W) grey, (H, W, 3)
    RGB or (H, W, 4) RGBA, in uint8 or 16 bits (16-bit values are brought to 8 bits, x / 257).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not a picture, a picture too large to open safely, an empty
            one, or an unsupported array.
    """
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"No image file at {image}.")
        try:
            with Image.open(image) as opened:
                return _pil_to_rgb(opened, str(image))
        except Image.DecompressionBombError as e:
            raise ValueError(f"{image} is too large to open safely ({e}); shrink it first, or "
                             "raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file.") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"Cannot read {image} as an image: {e}") from e
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "the image")
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, "the image array")
    raise TypeError(f"Unsupported image type {type(image).__name__}: give a path, a PIL image "
                    "or a numpy array.")


class SANPredictor:
    """Builds SAN from a config, loads weights, and segments images with a vocabulary.

    Example::

        predictor = SANPredictor("configs/san_clip_vit_res4_coco.yaml", "san_vit_b_16.pth")
        result = predictor.predict("street.jpg", ["car", "road", "tree", "sky"])
    """

    def __init__(self, config: Union[str, CfgNode], weights: Optional[str] = None,
                 opts: Sequence[str] = ()):
        """
        Args:
            config: a config file or a built config (SAN keys included).
            weights: checkpoint to load (default ``MODEL.WEIGHTS``; none: random weights).
            opts: ``KEY VALUE`` overrides.
        """
        cfg = get_san_cfg(config, opts) if isinstance(config, (str, os.PathLike)) else config.clone()
        cfg.defrost()
        if opts and not isinstance(config, (str, os.PathLike)):
            cfg.merge_from_list(list(opts))
        if weights is not None:
            cfg.MODEL.WEIGHTS = weights
        fall_back_to_cpu_without_cuda(cfg)
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        if cfg.MODEL.WEIGHTS:
            SANCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        else:
            logger.warning("No MODEL.WEIGHTS given: SAN runs with random side-adapter weights.")
        self.resize = build_test_resize(cfg)  # INPUT.TEST_RESIZE
        self.input_format = cfg.INPUT.FORMAT

    @torch.inference_mode()
    def predict(self, image: ImageInput, vocabulary: Sequence[str]) -> SegmentationResult:
        """Segments one image into the classes of ``vocabulary``."""
        names = check_vocabulary(vocabulary)
        rgb = load_rgb_image(image)
        height, width = rgb.shape[:2]
        resized = self.resize.get_transform(rgb).apply_image(rgb)
        if self.input_format == "BGR":
            resized = resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        scores = self.model([{"image": tensor, "height": height, "width": width,
                              "vocabulary": list(names)}])[0]["sem_seg"]
        return SegmentationResult(scores.argmax(0).cpu().numpy(), scores.cpu(), names)

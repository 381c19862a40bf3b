"""Drawing label maps with detectron2's Visualizer: demo overlays and prediction viewers."""
import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..evaluation.predictions import predictions_to_label_maps
from .io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["drawing_metadata", "fonts_for_names", "draw_label_map", "draw_segmentation", "draw_side_by_side",
           "save_image", "draw_saved_predictions"]


def drawing_metadata(class_names: Sequence[str]) -> Metadata:
    """Metadata with fixed colours per class, so every drawing colours a class alike."""
    palette = colormap(rgb=True, maximum=255)
    colors = [tuple(int(c) for c in palette[i % len(palette)]) for i in range(len(class_names))]
    return Metadata(name="san_d2_drawing", stuff_classes=list(class_names), stuff_colors=colors)


@functools.lru_cache(maxsize=None)
def _charmap(font_file: str) -> frozenset:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(font_file).get_charmap())
    except (OSError, RuntimeError):
        return frozenset()


def _default_font_file() -> str:
    from matplotlib import font_manager

    return font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))


@functools.lru_cache(maxsize=None)
def _font_file_for(char: str) -> Optional[str]:
    """An installed font with a glyph for ``char``: one matplotlib knows, else one fontconfig
    finds (fonts installed after matplotlib built its font list)."""
    from matplotlib import font_manager

    code = ord(char)
    for entry in font_manager.fontManager.ttflist:
        # matplotlib's "Last Resort" font maps every character to a box.
        if "LastResort" not in entry.fname and code in _charmap(entry.fname):
            return entry.fname
    if shutil.which("fc-list"):
        found = subprocess.run(["fc-list", f":charset={code:x}", "file"], capture_output=True,
                               text=True, timeout=30).stdout.split()
        for font_file in (f.rstrip(":") for f in found):
            if code in _charmap(font_file):
                font_manager.fontManager.addfont(font_file)
                return font_file
    return None


@contextlib.contextmanager
def fonts_for_names(names: Sequence[str]) -> Iterator[None]:
    """Draws text (within the block) with a font that has the glyphs of ``names``:
    matplotlib's default font lacks CJK and many other scripts, which it draws as boxes. Warns
    once for characters that no installed font has."""
    from matplotlib import font_manager, rc_context, rcParams

    covered = _charmap(_default_font_file())
    missing = {c for name in names for c in name
               if c.isprintable() and not c.isspace() and ord(c) not in covered}
    if not missing:
        yield
        return
    candidates = {f for f in map(_font_file_for, sorted(missing)) if f is not None}
    # Detectron2's Visualizer asks for the generic "sans-serif", which matplotlib resolves to
    # the first installed family of rcParams["font.sans-serif"]: put the best font first.
    best = max(candidates, key=lambda f: len(missing & {chr(c) for c in _charmap(f)}),
               default=None)
    lacking = missing - ({chr(c) for c in _charmap(best)} if best else set())
    if lacking:
        _warn_missing_glyphs("".join(sorted(lacking)))
    if best is None:
        yield
        return
    family = font_manager.FontProperties(fname=best).get_name()
    with rc_context({"font.sans-serif": [family, *rcParams["font.sans-serif"]]}):
        yield


@functools.lru_cache(maxsize=None)
def _warn_missing_glyphs(chars: str) -> None:
    logger.warning(f"No installed font has glyphs for {chars!r}: those class names are drawn as "
                   "boxes. Install a font that has them (e.g. Debian's fonts-noto-cjk or "
                   "fonts-wqy-microhei for Chinese, Japanese and Korean).")


def draw_label_map(image: np.ndarray, label_map: np.ndarray, metadata: Metadata,
                   alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) RGB overlay of a (H, W) label map; values outside the classes stay undrawn."""
    num_classes = len(metadata.stuff_classes)
    shown = np.where((label_map >= 0) & (label_map < num_classes), label_map, num_classes)
    with fonts_for_names(metadata.stuff_classes):
        return Visualizer(image, metadata).draw_sem_seg(shown, alpha=alpha).get_image()


def draw_segmentation(image: np.ndarray, class_map: np.ndarray, names: Sequence[str],
                      num_drawn: Optional[int] = None) -> np.ndarray:
    """Overlay of ``class_map`` (indices into ``names``) with the class names; classes from
    ``num_drawn`` on (a vocabulary expansion) stay undrawn."""
    return draw_label_map(image, class_map, drawing_metadata(names[:num_drawn]))


def draw_side_by_side(image: np.ndarray, ground_truth: np.ndarray, prediction: np.ndarray,
                      class_names: Sequence[str]) -> np.ndarray:
    """Ground truth (left) and prediction (right) over the image; ignored pixels undrawn."""
    metadata = drawing_metadata(class_names)
    return np.concatenate([draw_label_map(image, ground_truth, metadata),
                           draw_label_map(image, prediction, metadata)], axis=1)


def save_image(rgb: np.ndarray, path: os.PathLike) -> None:
    """Writes an (H, W, 3) uint8 RGB array; the format follows the suffix (PNG by default)."""
    image = Image.fromarray(rgb)
    image_format = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    with atomic_write(path) as f:
        image.save(f, format=image_format)


def draw_saved_predictions(predictions_file: str, dataset_name: str, output_dir: str,
                           max_images: Optional[int] = None) -> int:
    """Draws the evaluator's saved predictions next to the ground truth, one PNG per image
    (``<output_dir>/<image stem>.png``); returns how many were drawn.

    Raises:
        FileNotFoundError: no such predictions file.
        KeyError: the dataset is not registered.
        ValueError: the predictions name images that are not in the dataset.
    """
    if not os.path.isfile(predictions_file):
        raise FileNotFoundError(f"No predictions file {predictions_file}.")
    if dataset_name not in DatasetCatalog.list():
        raise KeyError(f"Dataset {dataset_name!r} is not registered.")
    with open(predictions_file) as f:
        label_maps = predictions_to_label_maps(json.load(f), dataset_name)
    records = {r["file_name"]: r for r in DatasetCatalog.get(dataset_name)}
    foreign = sorted(set(label_maps) - set(records))
    if foreign:
        raise ValueError(f"{len(foreign)} predicted images are not in {dataset_name} (e.g. "
                         f"{foreign[0]}): were the predictions made on another dataset?")
    metadata = MetadataCatalog.get(dataset_name)
    files = sorted(label_maps)[:max_images]
    for file_name in files:
        image = np.asarray(Image.open(file_name).convert("RGB"))
        ground_truth = np.asarray(Image.open(records[file_name]["sem_seg_file_name"])).astype(np.int64)
        ground_truth[ground_truth == metadata.ignore_label] = -1
        drawing = draw_side_by_side(image, ground_truth, label_maps[file_name],
                                    metadata.stuff_classes)
        save_image(drawing, Path(output_dir) / (Path(file_name).stem + ".png"))
    return len(files)

"""Drawing label maps with detectron2's Visualizer: demo overlays and prediction viewers."""
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..evaluation.predictions import predictions_to_label_maps
from .io import atomic_write

__all__ = ["drawing_metadata", "draw_label_map", "draw_segmentation", "draw_side_by_side",
           "save_image", "draw_saved_predictions"]


def drawing_metadata(class_names: Sequence[str]) -> Metadata:
    """Metadata with fixed colours per class, so every drawing colours a class alike."""
    palette = colormap(rgb=True, maximum=255)
    colors = [tuple(int(c) for c in palette[i % len(palette)]) for i in range(len(class_names))]
    return Metadata(name="san_d2_drawing", stuff_classes=list(class_names), stuff_colors=colors)


def draw_label_map(image: np.ndarray, label_map: np.ndarray, metadata: Metadata,
                   alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) RGB overlay of a (H, W) label map; values outside the classes stay undrawn."""
    num_classes = len(metadata.stuff_classes)
    shown = np.where((label_map >= 0) & (label_map < num_classes), label_map, num_classes)
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

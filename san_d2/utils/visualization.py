"""Drawing label maps with detectron2's Visualizer: demo overlays and prediction viewers."""
import hashlib
import json
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
# detectron2 0.6 (the version this package pins) names its label-placement threshold and
# edge colour privately; the drawings below reuse them so as to look like its own.
from detectron2.utils.visualizer import _LARGE_MASK_AREA_THRESH, _OFF_WHITE, GenericMask, Visualizer
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from PIL import Image, ImageDraw, ImageFont

from ..evaluation.predictions import predictions_to_label_maps
from .fonts import font_file_for_names, fonts_for_names
from .io import atomic_write

__all__ = ["READABLE_SIDE", "UNKNOWN_NAME", "class_colors", "drawing_metadata", "readable_scale",
           "draw_label_map", "draw_segmentation", "draw_proposals", "draw_side_by_side",
           "add_legend", "legend_strip", "save_image", "draw_saved_predictions"]


# Drawings of pictures smaller than this (longest side, pixels) are scaled up to it first, so
# that class names can be read.
READABLE_SIDE = 512
RGB = Tuple[float, float, float]  # a colour, each channel in [0, 1]
_PALETTE = list(dict.fromkeys(tuple(int(c) for c in rgb) for rgb in colormap(rgb=True, maximum=255)))


def class_colors(class_names: Sequence[str]) -> List[Tuple[int, int, int]]:
    """A colour per class name, the same in every drawing and run: the palette entry a hash
    of the name picks (the next free one when two names of one vocabulary pick the same;
    beyond the palette's 70 colours, one made from the hash)."""
    taken, colors = set(), []
    for name in class_names:
        digest = hashlib.sha1(name.encode()).digest()
        index = int.from_bytes(digest[:8], "big") % len(_PALETTE)
        for _ in range(len(_PALETTE)):
            if index not in taken:
                break
            index = (index + 1) % len(_PALETTE)
        if index in taken:
            colors.append((64 + digest[8] % 192, 64 + digest[9] % 192, 64 + digest[10] % 192))
            continue
        taken.add(index)
        colors.append(_PALETTE[index])
    return colors


def drawing_metadata(class_names: Sequence[str]) -> Metadata:
    """Metadata with :func:`class_colors`, so every drawing colours a class alike."""
    return Metadata(name="san_d2_drawing", stuff_classes=list(class_names),
                    stuff_colors=class_colors(class_names))


def readable_scale(height: int, width: int) -> int:
    """The integer factor that brings a small picture's longest side to READABLE_SIDE."""
    return max(1, math.ceil(READABLE_SIDE / max(height, width)))


def _upscaled(image: np.ndarray, label_map: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    scale = readable_scale(*label_map.shape)
    if scale == 1:
        return image, label_map
    size = (label_map.shape[1] * scale, label_map.shape[0] * scale)
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label_map, size, interpolation=cv2.INTER_NEAREST))


def _keep_labels_inside(output) -> None:
    """Moves the class names a Visualizer drew so that each lies wholly inside the image."""
    renderer = output.canvas.get_renderer()
    to_data = output.ax.transData.inverted()
    for text in output.ax.texts:
        patch = text.get_bbox_patch()
        if patch:  # laid out around the text as drawing would, without rendering the figure
            text.update_bbox_position_size(renderer)
        box = patch.get_window_extent(renderer) if patch else text.get_window_extent(renderer)
        (x0, y0), (x1, y1) = to_data.transform([[box.x0, box.y0], [box.x1, box.y1]])
        left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        dx = max(-left, 0.0) + min(output.width - right, 0.0)
        dy = max(-top, 0.0) + min(output.height - bottom, 0.0)
        if dx or dy:
            x, y = text.get_position()
            text.set_position((x + dx, y + dy))


def _remove_picture(output) -> None:
    """Leaves a Visualizer's figure with only what is drawn over the picture. matplotlib
    renders a large picture through float copies of it (2.5 GB for a 6000 x 4000 photo);
    :func:`_over_picture` lays the transparent drawing over the picture instead."""
    for picture in list(output.ax.images):
        picture.remove()


def _over_picture(output, picture: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """(H, W, 3) uint8: the figure's drawing (straight RGBA, transparent where nothing is
    drawn) composited over ``picture`` with its alpha, in bands of rows."""
    output.canvas.draw()
    drawing = np.asarray(output.canvas.buffer_rgba())
    if drawing.shape[:2] != picture.shape[:2]:
        raise ValueError(f"Drawing of {drawing.shape[:2]} for a picture of {picture.shape[:2]}.")
    result = np.empty(picture.shape, np.uint8)
    for top in range(0, picture.shape[0], band_rows):
        rows = slice(top, top + band_rows)
        alpha = drawing[rows, :, 3:].astype(np.uint16)
        blended = drawing[rows, :, :3] * alpha + picture[rows] * (255 - alpha) + 127
        result[rows] = blended // 255
    return result


def _median_of_counts(counts: np.ndarray) -> float:
    """The median of a multiset given as ``counts[v]`` copies of each value v, as
    ``np.median`` gives it (the mean of the two middle values for an even size)."""
    ends = np.cumsum(counts)
    lower, upper = np.searchsorted(ends, [(ends[-1] - 1) // 2, ends[-1] // 2], side="right")
    return (lower + upper) / 2


def _label_centers(binary_mask: np.ndarray) -> List[Tuple[float, float]]:
    """(x, y) where detectron2's ``draw_binary_mask`` writes a mask's name: the median of
    the pixel coordinates of its largest connected component and of every component over
    ``_LARGE_MASK_AREA_THRESH`` pixels. Taken from per-row and per-column counts instead of
    the coordinates of every pixel (16 bytes a pixel, and copies of them in ``np.median``:
    1.1 GB more at the peak for a region of 6000 x 4000 pixels)."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(binary_mask, connectivity=8)
    if count < 2:
        return []
    largest = int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
    centers = []
    for component in range(1, count):
        if component != largest and stats[component, cv2.CC_STAT_AREA] <= _LARGE_MASK_AREA_THRESH:
            continue
        left, top, width, height = stats[component, :4]
        inside = components[top:top + height, left:left + width] == component
        centers.append((left + _median_of_counts(inside.sum(axis=0)),
                        top + _median_of_counts(inside.sum(axis=1))))
    return centers


def _draw_region(visualizer: Visualizer, binary_mask: np.ndarray, color: RGB, *, text: str,
                 alpha: float, edge_color: Optional[RGB] = None) -> None:
    """``visualizer.draw_binary_mask(binary_mask, color, edge_color=..., text=..., alpha=...)``
    in less memory: a mask with holes is filled as one path of its outlines, with its edges,
    where detectron2 overlays a float32 RGBA picture of the whole image for it (384 MB for
    6000 x 4000, kept until the figure is drawn); names are placed by :func:`_label_centers`.
    Masks without holes are drawn exactly as detectron2 draws them.

    Args:
        binary_mask: (H, W) uint8, 1 inside the region.
        color, edge_color: RGB in [0, 1]; no ``edge_color``: detectron2's choice.
    """
    mask = GenericMask(binary_mask, *binary_mask.shape)
    if not mask.polygons:
        return
    if mask.has_holes:
        _draw_outlines(visualizer, mask.polygons, color, edge_color=edge_color, alpha=alpha)
    else:
        for polygon in mask.polygons:
            visualizer.draw_polygon(polygon.reshape(-1, 2), color, edge_color=edge_color,
                                    alpha=alpha)
    name_color = visualizer._change_color_brightness(color, brightness_factor=0.7)
    for center in _label_centers(binary_mask):
        visualizer.draw_text(text, center, color=name_color)


def _draw_outlines(visualizer: Visualizer, polygons: Sequence[np.ndarray], color: RGB, *,
                   edge_color: Optional[RGB], alpha: float) -> None:
    """Fills the region the closed (2N,) ``polygons`` bound (OpenCV traces holes against the
    outer boundaries, so the nonzero rule leaves them empty), in the style that
    ``draw_polygon`` gives its polygons."""
    points = [polygon.reshape(-1, 2) for polygon in polygons]
    path = MplPath.make_compound_path(*(MplPath(np.vstack([p, p[:1]]), closed=True)
                                        for p in points))
    visualizer.draw_polygon(points[0], color, edge_color=edge_color, alpha=alpha)
    styled = visualizer.output.ax.patches[-1]  # colours and line width, from detectron2
    outlines = PathPatch(path)
    outlines.update_from(styled)
    styled.remove()
    visualizer.output.ax.add_patch(outlines)


def _draw_label_regions(visualizer: Visualizer, label_map: np.ndarray, *, alpha: float) -> None:
    """The regions of ``visualizer.draw_sem_seg``: classes from the largest down (in its
    order), in the metadata's colours, edges off-white, drawn by :func:`_draw_region`; values
    outside the classes stay undrawn."""
    metadata = visualizer.metadata
    num_classes = len(metadata.stuff_classes)
    label_map = np.where((label_map >= 0) & (label_map < num_classes), label_map, num_classes)
    labels, areas = np.unique(label_map, return_counts=True)
    for label in labels[np.argsort(-areas)]:
        if label < num_classes:
            color = tuple(c / 255 for c in metadata.stuff_colors[label])
            _draw_region(visualizer, (label_map == label).astype(np.uint8), color,
                         text=metadata.stuff_classes[label], alpha=alpha, edge_color=_OFF_WHITE)


def draw_label_map(image: np.ndarray, label_map: np.ndarray, metadata: Metadata,
                   alpha: float = 0.5) -> np.ndarray:
    """RGB overlay of a (H, W) label map with the class names, which stay inside the picture;
    values outside the classes stay undrawn. Small pictures are drawn scaled up (see
    :func:`readable_scale`)."""
    image, label_map = _upscaled(image, label_map.astype(np.int32))
    with fonts_for_names(metadata.stuff_classes):
        visualizer = Visualizer(image, metadata)
        _remove_picture(visualizer.output)
        _draw_label_regions(visualizer, label_map, alpha=alpha)
        _keep_labels_inside(visualizer.output)
        return _over_picture(visualizer.output, image)


def add_legend(drawing: np.ndarray, names: Sequence[str], colors: Sequence[Tuple[int, int, int]],
               shares: Optional[Sequence[float]] = None) -> np.ndarray:
    """The drawing with a strip below it: a swatch and the name (and pixel share) per class."""
    return np.concatenate([drawing, legend_strip(drawing.shape[1], names, colors, shares)], axis=0)


def legend_strip(width: int, names: Sequence[str], colors: Sequence[Tuple[int, int, int]],
                 shares: Optional[Sequence[float]] = None) -> np.ndarray:
    """The (h, width, 3) uint8 legend that :func:`add_legend` puts below a drawing."""
    size = max(12, width // 40)
    font = ImageFont.truetype(font_file_for_names(names), size)
    entries = [f"{name} {100 * share:.1f}%" if shares is not None else name
               for name, share in zip(names, shares if shares is not None else names)]
    gap, swatch = size, size
    lines, line, x = [], [], gap
    for entry in entries:
        entry_width = swatch + gap // 2 + int(font.getlength(entry)) + gap
        if line and x + entry_width > width:
            lines.append(line)
            line, x = [], gap
        line.append(entry)
        x += entry_width
    lines.append(line)
    strip = Image.new("RGB", (width, (len(lines) * 2 + 1) * size // 1 + gap), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    index = 0
    for row, line in enumerate(lines):
        x, y = gap, gap + row * 2 * size
        for entry in line:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(colors[index]),
                           outline=(0, 0, 0))
            draw.text((x + swatch + gap // 2, y), entry, fill=(0, 0, 0), font=font)
            x += swatch + gap // 2 + int(font.getlength(entry)) + gap
            index += 1
    return np.asarray(strip)


UNKNOWN_NAME = "unknown"
UNKNOWN_COLOR = (128, 128, 128)


def draw_segmentation(image: np.ndarray, class_map: np.ndarray, names: Sequence[str],
                      num_drawn: Optional[int] = None, legend: bool = False) -> np.ndarray:
    """Overlay of ``class_map`` (indices into ``names``, -1 for pixels rejected as none of
    them) with the class names: unknown pixels in grey as "unknown", classes from
    ``num_drawn`` on (a vocabulary expansion) undrawn. ``legend`` adds a strip with the
    classes present and their pixel shares."""
    drawn = list(names[:num_drawn])
    metadata = drawing_metadata(drawn)
    if (class_map < 0).any():
        metadata = Metadata(name="san_d2_drawing", stuff_classes=[*drawn, UNKNOWN_NAME],
                            stuff_colors=[*metadata.stuff_colors, UNKNOWN_COLOR])
        class_map = np.where(class_map < 0, len(drawn), np.where(class_map >= len(drawn),
                                                                    len(drawn) + 1, class_map))
    drawing = draw_label_map(image, class_map, metadata)
    if not legend:
        return drawing
    counts = np.bincount(class_map.ravel().clip(0), minlength=len(metadata.stuff_classes) + 2)
    present = [i for i in np.argsort(-counts[:len(metadata.stuff_classes)], kind="stable")
               if counts[i]]
    return add_legend(drawing, [metadata.stuff_classes[i] for i in present],
                      [metadata.stuff_colors[i] for i in present],
                      [counts[i] / class_map.size for i in present])


def draw_proposals(image: np.ndarray, masks: np.ndarray, labels: Sequence[str],
                   alpha: float = 0.4) -> np.ndarray:
    """Overlay of binary masks (N, H, W), each in its own colour with its label (scaled up
    like :func:`draw_label_map`)."""
    scale = readable_scale(*image.shape[:2])
    if scale > 1:
        image, _ = _upscaled(image, np.zeros(image.shape[:2], np.int32))
        masks = [cv2.resize(m.astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
                 for m in masks]
    visualizer = Visualizer(image, Metadata(name="san_d2_proposals"))
    _remove_picture(visualizer.output)
    with fonts_for_names(labels):
        for i, (mask, label) in enumerate(zip(masks, labels)):
            color = tuple(c / 255 for c in _PALETTE[i % len(_PALETTE)])
            _draw_region(visualizer, np.asarray(mask, np.uint8), color, text=label, alpha=alpha)
        _keep_labels_inside(visualizer.output)
        return _over_picture(visualizer.output, image)


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

"""Drawing helpers shared by the demo, the quick start and the prediction viewer."""
from typing import Sequence

import numpy as np
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

__all__ = ["drawing_metadata", "draw_label_map"]


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

"""Drawings: detectron2's Visualizer look, in memory that does not grow with what is drawn."""
import tracemalloc

import numpy as np
from detectron2.utils.visualizer import Visualizer

from san_d2.utils import visualization as vis


def _names_placed_by_detectron2(binary_mask):
    """Where detectron2's own ``draw_binary_mask`` writes the mask's name."""
    visualizer = Visualizer(np.zeros((*binary_mask.shape, 3), np.uint8))
    output = visualizer.draw_binary_mask(binary_mask, color=(1.0, 0.0, 0.0), text="x")
    return [tuple(float(v) for v in text.get_position()) for text in output.ax.texts]


def test_names_are_placed_where_detectron2_places_them():
    rng = np.random.default_rng(0)
    mask = np.zeros((900, 1000), np.uint8)
    mask[20:420, 30:400] = 1  # 148,000 pixels: named although not the largest
    mask[450:880, 500:990] = 1  # the largest
    mask[100:103, 600:604] = 1  # small: not named
    mask[600:800, 100:300] = rng.random((200, 200)) < 0.7  # ragged, even and odd counts
    for binary in (mask, mask[:, :999], mask[450:880, 500:990], mask[600:800, 100:300]):
        binary = np.ascontiguousarray(binary)
        assert vis._label_centers(binary) == _names_placed_by_detectron2(binary)
    assert vis._label_centers(np.zeros_like(mask)) == []


def _drawn_by_detectron2(image, label_map, metadata):
    with vis.fonts_for_names(metadata.stuff_classes):
        visualizer = Visualizer(image, metadata)
        vis._remove_picture(visualizer.output)
        num_classes = len(metadata.stuff_classes)
        shown = np.where((label_map >= 0) & (label_map < num_classes), label_map, num_classes)
        output = visualizer.draw_sem_seg(shown.astype(np.int32), alpha=0.5)
        vis._keep_labels_inside(output)
        return vis._over_picture(output, image)


def test_regions_without_holes_are_drawn_as_detectron2_draws_them():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    label_map = np.zeros((600, 800), np.int64)
    label_map[:, 300:] = 1
    label_map[400:, :] = 2
    label_map[:100, 700:] = -1  # rejected as unknown: undrawn
    label_map[500:, 700:] = 7  # outside the classes: undrawn
    metadata = vis.drawing_metadata(["sky", "sea", "sand"])
    assert np.array_equal(vis.draw_label_map(image, label_map, metadata),
                          _drawn_by_detectron2(image, label_map, metadata))


def test_a_region_with_a_hole_is_filled_around_it_without_a_picture_sized_overlay():
    image = np.full((2000, 3000, 3), 90, np.uint8)
    label_map = np.full((2000, 3000), -1, np.int64)
    label_map[500:1500, 500:2500] = 1  # a frame of "sea" around an undrawn hole
    label_map[800:1200, 1000:2000] = -1
    metadata = vis.drawing_metadata(["sky", "sea"])
    tracemalloc.start()
    try:
        drawing = vis.draw_label_map(image, label_map, metadata)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sea = np.array(metadata.stuff_colors[1])
    assert np.abs(drawing[600, 600].astype(int) - (sea + 90) / 2).max() <= 2  # blended
    hole = drawing[810:1190, 1010:1990]  # inside the edge lines
    assert (hole[:150] == 90).all() and (hole[-150:] == 90).all()  # the picture shows, but
    assert 0 < (hole != 90).any(-1).mean() < 0.02  # for the name, placed as detectron2 does
    assert (drawing[:400] == 90).all()  # and so does everything outside the frame
    # detectron2 overlays a float32 RGBA picture of the image for a mask with holes: 96 MB
    # here, 544 MB at the peak with matplotlib's copies of it.
    assert peak < 160 * 2**20, f"{peak / 2**20:.0f} MB"

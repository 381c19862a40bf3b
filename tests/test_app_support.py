"""What the web app computes for a request (without the browser)."""
import io

import numpy as np
import pytest
from PIL import Image

from san_d2 import SANPredictor
from san_d2.utils.app_support import answer, color_label_map, fit_upload, label_png

from .conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def predictor():
    return SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])


def test_large_uploads_are_resized_with_a_notice():
    image = np.zeros((1000, 3000, 3), np.uint8)
    resized, notice = fit_upload(image, max_side=1500)
    assert resized.shape == (500, 1500, 3)
    assert notice == ("The picture (3000x1000) was resized to 1500x500 (longest side 1500) "
                      "before segmentation.")
    assert fit_upload(image[:100, :100])[1] == ""


def test_label_png_holds_class_indices():
    class_map = np.array([[0, 1], [-1, 2]])
    labels = np.asarray(Image.open(io.BytesIO(label_png(class_map, 3))))
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 1], [255, 2]]
    wide = np.asarray(Image.open(io.BytesIO(label_png(np.array([[300, -1]]), 400))))
    assert wide.tolist() == [[300, 65535]]


def test_answer_table_and_maps(predictor):
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    result = answer(predictor, rgb, "sky; grass, lawn; road", expansion="coco_stuff")
    names = [name for name, _ in result.table]
    assert set(names) <= {"sky", "grass", "road", "other"}
    assert sum(share for _, share in result.table) == pytest.approx(100, abs=0.05)
    assert result.overlay.shape[1] == 80 * 7 and result.label_map.shape[:2] == (60 * 7, 80 * 7)
    plain = predictor.predict(rgb, ["sky", ("grass", "lawn"), "road"])
    assert plain.vocabulary == ("sky", "grass", "road")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        answer(predictor, rgb, " , ")


def test_colour_label_map_uses_the_drawing_colours():
    image = color_label_map(np.array([[0, -1], [1, 5]]), ["sky", "road"])
    assert image.shape == (512, 512, 3)
    assert tuple(image[0, 0]) != tuple(image[0, 511]) and tuple(image[511, 511]) == (255, 255, 255)

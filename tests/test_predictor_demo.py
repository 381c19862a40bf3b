"""SANPredictor's inputs, the demo command, and the prediction viewer."""
import json

import numpy as np
import pytest
from PIL import Image

from san_d2.data.vocabulary import expand_vocabulary, parse_vocabulary
from san_d2.predictor import SANPredictor, SegmentationResult, load_rgb_image
from san_d2.utils.visualization import legend_strip
from san_d2_tools.demo import main as demo_main
from san_d2_tools.visualize_predictions import main as viewer_main

from .conftest import TINY_CONFIG

VOCABULARY = ["sky", "grass", "road", "car"]


@pytest.fixture(scope="module")
def predictor():
    return SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])


def test_image_inputs_are_normalised(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert load_rgb_image(rgb).shape == (20, 30, 3)
    assert load_rgb_image(rgb[:, :, 0]).shape == (20, 30, 3)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(load_rgb_image(rgba), rgb)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    assert load_rgb_image(str(tmp_path / "grey.png")).shape == (20, 30, 3)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 20x30 file shows as 30x20.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb_image(str(tmp_path / "rotated.jpg")).shape == (30, 20, 3)


def test_bad_images_fail_clearly(tmp_path):
    (tmp_path / "broken.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="broken.jpg cannot be read as an image"):
        load_rgb_image(str(tmp_path / "broken.jpg"))
    with pytest.raises(FileNotFoundError, match="No image file"):
        load_rgb_image(str(tmp_path / "missing.jpg"))
    with pytest.raises(ValueError, match="uint8"):
        load_rgb_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="Cannot segment a int"):
        load_rgb_image(42)


def test_predict_returns_map_scores_and_shares(predictor):
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    result = predictor.predict(image, [" sky", "grass", "road", "car"])
    assert result.vocabulary == tuple(VOCABULARY)
    assert result.class_map.shape == (50, 70) and result.scores.shape == (4, 50, 70)
    assert np.array_equal(result.class_map, result.scores.argmax(0).numpy())
    assert sum(result.pixel_shares().values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-empty list"):
        predictor.predict(image, [])


def test_vocabulary_expansion_is_deterministic_and_deduplicated():
    names, count = expand_vocabulary(["cat", "grass"], "coco_stuff")
    assert count == 2 and names[:2] == ["cat", "grass"]
    assert names.count("grass") == 1 and len(names) == 2 + 91 - 1
    assert expand_vocabulary(["cat"], "none") == (["cat"], 1)
    assert parse_vocabulary(" cat, dog ,grass") == ["cat", "dog", "grass"]


def test_result_description_sums_the_expansion_up_as_other():
    class_map = np.array([[0, 0, 2, 3], [0, 1, 2, 3]])
    result = SegmentationResult(class_map, None, ("cat", "dog", "wall", "sky"))
    assert result.describe() == "cat 37.5%, wall 25.0%, sky 25.0%, dog 12.5%"
    assert result.describe(num_named=2) == "cat 37.5%, dog 12.5%, other 50.0%"


def test_demo_writes_a_drawing_per_image(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(2)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(inputs / name)
    (inputs / "notes.txt").write_text("skipped: not an image extension")
    code = demo_main(["--config-file", str(TINY_CONFIG), "--input", str(inputs),
                      "--vocabulary", "cat, dog,grass", "--output", str(tmp_path / "out"),
                      "--expand-vocabulary", "coco_stuff", "--opts", "MODEL.DEVICE", "cpu"])
    assert code == 0
    drawings = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert drawings == ["a.png", "b.png"]
    # Small pictures are drawn scaled up (by a whole factor) so that class names can be read.
    assert Image.open(tmp_path / "out" / "a.png").size == (60 * 9, 40 * 9)
    assert "a.jpg:" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--input", "/no/such/dir/*.jpg", "--vocabulary", "cat"], "no such file"),
    (["--input", "IMAGES", "--vocabulary", " , "], "vocabulary is empty"),
    (["--input", "IMAGES", "--vocabulary", "cat,,dog"], "empty name"),
])
def test_demo_fails_clearly(tmp_path, capsys, args, message):
    (tmp_path / "img.png").write_bytes(b"")
    args = [a.replace("IMAGES", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--config-file", str(TINY_CONFIG), "--output", str(tmp_path / "o"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_prediction_viewer_draws_ground_truth_and_prediction(tmp_path):
    from san_d2.data.synthetic import generate_synthetic_dataset, register_synthetic_dataset
    import pycocotools.mask as mask_util

    from san_d2.evaluation import predictions_to_label_maps

    generate_synthetic_dataset(str(tmp_path / "data"), num_train=1, num_val=2, size=64)
    _, val = register_synthetic_dataset(str(tmp_path / "data"), prefix="viewer_test")
    from detectron2.data import DatasetCatalog

    entries = []
    for record in DatasetCatalog.get(val):
        label = np.asarray(Image.open(record["sem_seg_file_name"]))
        for c in np.unique(label[label != 255]):
            rle = mask_util.encode(np.asfortranarray((label == c).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            entries.append({"file_name": record["file_name"], "category_id": int(c),
                            "segmentation": rle})
    path = tmp_path / "sem_seg_predictions.json"
    path.write_text(json.dumps(entries))
    maps = predictions_to_label_maps(entries, val)
    for record in DatasetCatalog.get(val):
        label = np.asarray(Image.open(record["sem_seg_file_name"])).astype(np.int64)
        assert np.array_equal(maps[record["file_name"]][label != 255], label[label != 255])
    assert viewer_main(["--predictions", str(path), "--dataset", val,
                        "--output", str(tmp_path / "vis")]) == 0
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2
    assert Image.open(next((tmp_path / "vis").glob("*.png"))).size == (2 * 512, 512)


def _video(path, frames=10, size=(48, 64)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, size[::-1])
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    writer.release()


def test_demo_segments_a_video_frame_by_frame(tmp_path, capsys, monkeypatch):
    import cv2

    import san_d2_tools.demo as demo

    strips = []
    monkeypatch.setattr(demo, "legend_strip",
                        lambda *args: strips.append(args) or legend_strip(*args))
    _video(tmp_path / "clip.mp4")
    assert demo_main(["--config-file", str(TINY_CONFIG), "--video-input", str(tmp_path / "clip.mp4"),
                      "--vocabulary", "cat,dog", "--output", str(tmp_path / "out"), "--legend",
                      "--opts", "MODEL.DEVICE", "cpu"]) == 0
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 10 and frames[0].shape[1] == 64 * 8  # drawn scaled up, one size
    assert frames[0].shape[0] == 48 * 8 + legend_strip(*strips[0]).shape[0]  # legend below
    assert len(strips) == 1 and strips[0][0] == 64 * 8  # the legend is built once
    assert not list((tmp_path / "out").glob(".*"))  # written under a temporary name, renamed


def test_webcam_without_display_or_camera_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert demo_main(["--config-file", str(TINY_CONFIG), "--webcam", "--vocabulary", "cat"]) == 1
    assert "there is no display here" in capsys.readouterr().err
    monkeypatch.setenv("DISPLAY", ":99")
    assert demo_main(["--config-file", str(TINY_CONFIG), "--webcam", "--vocabulary", "cat"]) == 1
    assert "No camera 0" in capsys.readouterr().err


def _text_boxes(output):
    output.canvas.draw()
    renderer, to_data = output.canvas.get_renderer(), output.ax.transData.inverted()
    boxes = []
    for text in output.ax.texts:
        box = text.get_bbox_patch().get_window_extent(renderer)
        (x0, y0), (x1, y1) = to_data.transform([[box.x0, box.y0], [box.x1, box.y1]])
        boxes.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return boxes


def test_class_names_stay_inside_the_picture():
    from detectron2.utils.visualizer import Visualizer

    from san_d2.utils.visualization import _keep_labels_inside, drawing_metadata

    image = np.full((300, 400, 3), 90, np.uint8)
    label = np.zeros((300, 400), np.int64)
    label[:, 385:] = 1  # a thin strip at the right border with a long name
    label[290:, :150] = 2  # and one at the bottom
    metadata = drawing_metadata(["wall", "a long class name at the border", "floor at the bottom"])
    output = Visualizer(image, metadata).draw_sem_seg(label)
    assert any(right > 400 for _, _, right, _ in _text_boxes(output))  # detectron2 cuts it
    _keep_labels_inside(output)
    for left, top, right, bottom in _text_boxes(output):
        assert left >= -0.5 and top >= -0.5 and right <= 400.5 and bottom <= 300.5


def test_colours_follow_the_class_name():
    from san_d2.utils.visualization import class_colors

    assert class_colors(["sky", "car"])[0] == class_colors(["car", "tree", "sky"])[2]
    colors = class_colors([f"class {i}" for i in range(60)])
    assert len(set(colors)) == 60  # one vocabulary never shares a colour (palette of 74)

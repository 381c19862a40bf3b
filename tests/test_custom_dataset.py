"""Your own dataset, end to end as docs/custom_dataset.md walks through it: register a folder
of images and labels, fine-tune from a config that inherits a shipped one, evaluate, predict."""
import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser
from PIL import Image

from san_d2 import SANPredictor
from san_d2.data.datasets import register_dataset_file, register_folder_dataset
from san_d2.data.synthetic import make_scene
from san_d2_tools.train_net import main as train_net_main

CLASSES = ["sky", "ground", "object"]
# The synthetic scenes' classes -> ours: sky; grass, sand, water; red disc, white square.
TO_OURS = np.array([0, 1, 1, 1, 2, 2] + [255] * 250, np.uint8)


def _write_split(root, split, count, seed):
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, label = make_scene(96, rng)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / split / f"{i:03d}.jpg")
        Image.fromarray(TO_OURS[label]).save(root / "labels" / split / f"{i:03d}.png")


def _describe(root, **extra):
    description = {"name": "parts", "classes": CLASSES, "ignore_label": 255,
                   "splits": {"train": {"images": "images/train", "labels": "labels/train"},
                              "val": {"images": "images/val", "labels": "labels/val"}}, **extra}
    path = root / "parts.json"
    path.write_text(json.dumps(description))
    return path


@pytest.mark.slow
def test_walkthrough_register_fine_tune_evaluate_predict(tmp_path):
    data = tmp_path / "parts"
    _write_split(data, "train", 12, seed=0)
    _write_split(data, "val", 5, seed=1)
    definition = _describe(data)
    config = tmp_path / "my_configs" / "parts.yaml"
    config.parent.mkdir()
    config.write_text(
        "_BASE_: quickstart/san_tiny_synthetic.yaml  # a shipped config, found by name\n"
        f"DATASETS:\n  DEFINITIONS: ['{definition}']\n"
        "  TRAIN: ('parts_train',)\n  TEST: ('parts_val',)\n"
        "MODEL:\n  SAN:\n    NUM_CLASSES: 3\n"
        "SOLVER:\n  MAX_ITER: 12\n  IMS_PER_BATCH: 4\n"
        "INPUT:\n  MIN_SIZE_TRAIN: (96,)\n  MIN_SIZE_TEST: 96\n  CROP:\n    SIZE: (96, 96)\n"
        "  SIZE_DIVISIBILITY: 96\n"
        f"OUTPUT_DIR: '{tmp_path / 'run'}'\n")
    train_net_main(default_argument_parser().parse_args(["--config-file", str(config)]))
    trained = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert 0 <= trained["parts_val"]["mIoU"] <= 100 and "IoU-object" in trained["parts_val"]

    weights = str(tmp_path / "run" / "model_final.pth")
    evaluated = train_net_main(default_argument_parser().parse_args(
        ["--config-file", str(config), "--eval-only", "MODEL.WEIGHTS", weights,
         "OUTPUT_DIR", str(tmp_path / "eval")]))
    assert evaluated["parts_val"]["sem_seg"]["mIoU"] == pytest.approx(trained["parts_val"]["mIoU"])

    predictor = SANPredictor(str(config), weights, opts=["MODEL.DEVICE", "cpu"])
    result = predictor.predict(str(data / "images" / "val" / "000.jpg"), CLASSES)
    assert result.class_map.shape == (96, 96) and set(np.unique(result.class_map)) <= {0, 1, 2}


def test_labels_outside_the_class_range_are_named(tmp_path):
    _write_split(tmp_path, "val", 3, seed=2)
    bad = np.full((96, 96), 1, np.uint8)
    bad[:4, :4] = 7
    Image.fromarray(bad).save(tmp_path / "labels" / "val" / "001.png")
    register_folder_dataset("range_test", str(tmp_path / "images" / "val"),
                            str(tmp_path / "labels" / "val"), CLASSES)
    with pytest.raises(ValueError, match=r"1 label maps hold values .*0\.\.2 nor the ignore "
                                         r"value 255, e\.g\. .*001\.png \(7\)"):
        DatasetCatalog.get("range_test")
    DatasetCatalog.remove("range_test")


def test_unpaired_labels_and_bad_descriptions_fail_clearly(tmp_path):
    _write_split(tmp_path, "train", 2, seed=3)
    (tmp_path / "images" / "train" / "001.jpg").unlink()
    register_folder_dataset("pairs_test", str(tmp_path / "images" / "train"),
                            str(tmp_path / "labels" / "train"), CLASSES)
    with pytest.raises(ValueError, match="1 of 2 labels .* have no image"):
        DatasetCatalog.get("pairs_test")
    DatasetCatalog.remove("pairs_test")
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        register_dataset_file(str(_describe(tmp_path, colour="red")))
    with pytest.raises(ValueError, match="distinct non-empty names"):
        register_folder_dataset("dup_test", str(tmp_path), str(tmp_path), ["a", "a"])

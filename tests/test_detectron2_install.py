"""The detectron2 in this environment works on the modern stack for what SAN uses."""
import importlib
import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import detectron2


def _san_d2_build():
    """The build record of the san_d2-installed detectron2, or None for a user's own build."""
    try:
        text = importlib.metadata.distribution("detectron2").read_text("san_d2_build.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    return json.loads(text) if text else None


requires_san_d2_build = pytest.mark.skipif(
    _san_d2_build() is None, reason="detectron2 was not installed by tools/install_detectron2.py"
)


@pytest.mark.parametrize(
    "module",
    [
        "detectron2.layers",
        "detectron2.data.transforms",
        "detectron2.engine",
        "detectron2.evaluation",
        "detectron2.utils.visualizer",
        "detectron2.checkpoint",
        "detectron2.modeling",
        "detectron2.projects.deeplab",
        "detectron2.projects.point_rend",
        "detectron2.utils.analysis",
        "detectron2.model_zoo",
    ],
)
def test_module_imports(module):
    importlib.import_module(module)


def test_distribution_is_detectron2_0_6():
    assert importlib.metadata.version("detectron2") == detectron2.__version__ == "0.6"


@requires_san_d2_build
def test_installed_tree():
    root = Path(detectron2.__file__).parent
    for project in ["point_rend", "deeplab", "panoptic_deeplab"]:
        assert (root / "projects" / project / "__init__.py").is_file(), project
    assert len(list((root / "model_zoo" / "configs").rglob("*.yaml"))) > 50
    alias = re.compile(r"\bnp\.(int|float|bool|str)\b(?!\w)")
    leftovers = [p for p in root.rglob("*.py") if alias.search(p.read_text(encoding="utf-8"))]
    assert leftovers == []
    assert "Image.LINEAR" not in (root / "data" / "transforms" / "transform.py").read_text()


def test_model_zoo_config_lookup():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("Misc/semantic_R_50_FPN_1x.yaml")
    assert Path(path).is_file()
    with pytest.raises(RuntimeError, match="not available"):
        model_zoo.get_config_file("no/such.yaml")


def test_panoptic_deeplab_needs_only_panopticapi():
    try:
        importlib.import_module("detectron2.projects.panoptic_deeplab")
    except ModuleNotFoundError as e:  # panopticapi is not on PyPI
        assert e.name == "panopticapi"


@requires_san_d2_build
def test_stand_in_extension_names_the_operator():
    from detectron2 import _C
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
    with pytest.raises(_C.UnavailableOperatorError, match="'box_iou_rotated' is unavailable"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(AttributeError):
        _C.__wrapped__  # dunder lookups must not look like operators


def test_collect_env_runs():
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()


def test_transforms_on_image_and_segmentation():
    from detectron2.data import transforms as T

    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    label = np.zeros((30, 40), dtype=np.uint8)
    label[:, 20:] = 1
    aug_input = T.AugInput(image, sem_seg=label)
    transforms = T.AugmentationList(
        [T.ResizeShortestEdge(60, 1000), T.RandomFlip(prob=1.0), T.RandomCrop("absolute", (50, 50))]
    )(aug_input)
    assert aug_input.image.shape == (50, 50, 3) and aug_input.sem_seg.shape == (50, 50)
    assert set(np.unique(aug_input.sem_seg)) <= {0, 1}
    # ExtentTransform's default interpolation is the one Pillow 10 renamed.
    extent = T.ExtentTransform((0, 0, 40, 30), (15, 20))
    assert extent.apply_image(image).shape == (15, 20, 3)
    assert len(transforms) == 3


def _register_sem_seg_dataset(name, tmp_path, gt, classes, ignore_label):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    Image.fromarray(np.zeros(gt.shape + (3,), np.uint8)).save(tmp_path / "img.jpg")
    Image.fromarray(gt).save(tmp_path / "gt.png")
    record = {"file_name": str(tmp_path / "img.jpg"), "sem_seg_file_name": str(tmp_path / "gt.png")}
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(stuff_classes=classes, ignore_label=ignore_label)
    return record


def test_sem_seg_evaluator_known_answer(tmp_path):
    from detectron2.evaluation import SemSegEvaluator

    gt = np.array(
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]], dtype=np.uint8
    )
    pred = np.array([[0, 0, 0, 1], [0, 1, 1, 1], [2, 2, 0, 0], [1, 2, 2, 2]])
    record = _register_sem_seg_dataset("san_d2_test_eval", tmp_path, gt, ["a", "b", "c"], 255)
    evaluator = SemSegEvaluator("san_d2_test_eval", distributed=False, output_dir=str(tmp_path))
    evaluator.reset()
    scores = torch.nn.functional.one_hot(torch.from_numpy(pred), 3).permute(2, 0, 1).float()
    evaluator.process([record], [{"sem_seg": scores}])
    res = evaluator.evaluate()["sem_seg"]
    # By hand, over the 12 non-ignored pixels: class a: TP 3, GT 4, predicted 4 -> IoU 3/5;
    # b: TP 3, GT 4, predicted 5 -> 3/6; c: TP 3, GT 4, predicted 3 -> 3/4.
    assert res["IoU-a"] == pytest.approx(60.0)
    assert res["IoU-b"] == pytest.approx(50.0)
    assert res["IoU-c"] == pytest.approx(75.0)
    assert res["mIoU"] == pytest.approx(100 * (0.6 + 0.5 + 0.75) / 3)
    assert res["fwIoU"] == pytest.approx(100 * (0.6 + 0.5 + 0.75) / 3)
    assert res["pACC"] == pytest.approx(75.0) and res["mACC"] == pytest.approx(75.0)
    assert (tmp_path / "sem_seg_predictions.json").is_file()


def test_visualizer_draws_sem_seg():
    from detectron2.data import MetadataCatalog
    from detectron2.utils.visualizer import Visualizer

    image = np.full((40, 60, 3), 128, dtype=np.uint8)
    label = np.zeros((40, 60), dtype=np.int64)
    label[10:30, 20:50] = 1
    metadata = MetadataCatalog.get("san_d2_test_vis").set(stuff_classes=["floor", "rug"])
    drawn = Visualizer(image, metadata).draw_sem_seg(label, alpha=0.6).get_image()
    assert drawn.shape == image.shape
    assert (drawn != 128).any(axis=2).mean() > 0.5

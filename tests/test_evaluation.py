"""The 16-bit benchmarks (PC-459, ADE-847: uint16 TIFF labels, ignore 65535) evaluate right
with detectron2's SemSegEvaluator as installed."""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from PIL import Image


def _evaluate(tmp_path, name, gt, pred, num_classes, ignore_label, ext):
    Image.fromarray(np.zeros(gt.shape + (3,), np.uint8)).save(tmp_path / "img.jpg")
    Image.fromarray(gt).save(tmp_path / f"gt.{ext}")
    record = {"file_name": str(tmp_path / "img.jpg"), "sem_seg_file_name": str(tmp_path / f"gt.{ext}")}
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(stuff_classes=[f"c{i}" for i in range(num_classes)],
                                  ignore_label=ignore_label, evaluator_type="sem_seg")
    evaluator = SemSegEvaluator(name, distributed=False, output_dir=str(tmp_path))
    evaluator.reset()
    scores = torch.zeros(num_classes, *gt.shape)
    scores.scatter_(0, torch.from_numpy(pred)[None].long(), 1.0)
    evaluator.process([record], [{"sem_seg": scores}])
    return evaluator, evaluator.evaluate()["sem_seg"]


def _expected_confusion(gt, pred, num_classes, ignore_label):
    """(N+1) x (N+1), rows = prediction, columns = ground truth; ignored pixels in the last column."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for p, g in zip(pred.flatten(), gt.flatten()):
        matrix[p, num_classes if g == ignore_label else g] += 1
    return matrix


def test_sixteen_bit_labels_with_ignore_65535(tmp_path):
    n = 459
    gt = np.array([[0, 0, 300, 300], [458, 458, 300, 65535], [65535, 65535, 7, 7]], np.uint16)
    pred = np.array([[0, 300, 300, 300], [458, 0, 300, 5], [0, 0, 7, 458]])
    evaluator, res = _evaluate(tmp_path, "eval_test_16bit", gt, pred, n, 65535, "tif")
    assert np.array_equal(evaluator._conf_matrix, _expected_confusion(gt, pred, n, 65535))
    # Non-ignored pixels: 9. Per class TP/GT/pred: 0: 1/2/2 -> 1/3; 300: 3/3/4 -> 3/4;
    # 458: 1/2/2 -> 1/3; 7: 1/2/1 -> 1/2. Classes only predicted in ignored pixels (5) don't count.
    assert res["IoU-c0"] == pytest.approx(100 / 3)
    assert res["IoU-c300"] == pytest.approx(75.0)
    assert res["IoU-c458"] == pytest.approx(100 / 3)
    assert res["IoU-c7"] == pytest.approx(50.0)
    assert res["mIoU"] == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 3 + 1 / 2) / 4)
    assert res["pACC"] == pytest.approx(100 * 6 / 9)
    assert (tmp_path / "sem_seg_predictions.json").is_file()

"""Labels without scores: the arg-max computed in bands equals the arg-max of the scores, for
the post-processing functions, the model (every inference path), the evaluator, TTA and the
predictor."""
import json

import numpy as np
import pytest
import torch
from detectron2.evaluation import DatasetEvaluators
from detectron2.modeling.postprocessing import sem_seg_postprocess

from san_d2 import SANPredictor, Trainer, get_san_cfg
from san_d2.data.synthetic import generate_synthetic_dataset, register_synthetic_dataset
from san_d2.evaluation import SANSemSegEvaluator
from san_d2.modeling.postprocessing import (combine_masks_and_classes, combined_labels,
                                            resize_crop_resize_matrix, resized_labels)
from san_d2.modeling.test_time_augmentation import SemanticSegmentorWithTTA

from .conftest import TINY_CONFIG, build_tiny_san

VOCABULARY = ["sky", "grass", "road", "car", "tree"]


def _inputs(queries=7, classes=5, h=9, w=13, seed=0):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(queries, classes, generator=generator).softmax(-1)
    return probs, torch.randn(queries, h, w, generator=generator) * 4


@pytest.mark.parametrize("band_rows", [None, 1, 5])
@pytest.mark.parametrize("with_background", [False, True])
def test_banded_labels_are_the_argmax_of_the_scores(band_rows, with_background):
    probs, logits = _inputs()
    rows = resize_crop_resize_matrix(9, 36, 30, 41)
    cols = resize_crop_resize_matrix(13, 52, 50, 67)
    scores = combine_masks_and_classes(probs, logits, rows, cols, band_rows=band_rows)
    maps = combined_labels(probs, logits, rows, cols, with_background=with_background,
                           band_rows=band_rows)
    classes = scores[:-1] if with_background else scores
    assert maps.labels.dtype == torch.int64 and maps.labels.shape == (41, 67)
    assert torch.equal(maps.labels, classes.argmax(0))
    assert torch.equal(maps.best, classes.max(0).values)
    if with_background:
        assert torch.equal(maps.background, scores[-1])
    else:
        assert maps.background is None


@pytest.mark.parametrize("with_background", [False, True])
def test_many_classes_are_reduced_a_few_pixels_at_a_time_with_the_same_result(with_background):
    probs, logits = _inputs(queries=20, classes=900, h=12, w=16, seed=2)  # 291 pixels a step
    rows = resize_crop_resize_matrix(12, 48, 45, 77)
    cols = resize_crop_resize_matrix(16, 64, 60, 101)
    scores = combine_masks_and_classes(probs, logits, rows, cols)
    maps = combined_labels(probs, logits, rows, cols, with_background=with_background)
    classes = scores[:-1] if with_background else scores
    assert torch.equal(maps.labels, classes.argmax(0))
    assert torch.equal(maps.best, classes.max(0).values)
    if with_background:
        assert torch.equal(maps.background, scores[-1])


def test_ties_go_to_the_first_class_as_with_argmax():
    probs, logits = _inputs(classes=3)
    probs = torch.cat([probs[:, :1], probs[:, :1], probs[:, 1:]], dim=1)  # classes 0, 1 equal
    rows, cols = resize_crop_resize_matrix(9, 18, 18, 18), resize_crop_resize_matrix(13, 26, 26, 26)
    maps = combined_labels(probs, logits, rows, cols)
    assert not (maps.labels == 1).any()
    assert torch.equal(maps.labels, combine_masks_and_classes(probs, logits, rows, cols).argmax(0))


@pytest.mark.parametrize("pixels_per_chunk", [1, 500, 2**23])
def test_labels_resized_class_by_class_are_the_argmax_of_the_resized_scores(pixels_per_chunk):
    scores = torch.rand(6, 32, 48, generator=torch.Generator().manual_seed(1))
    scores[2] = scores[1]  # a tie across chunk borders
    full = sem_seg_postprocess(scores[:-1], (30, 45), 57, 83)
    maps = resized_labels(scores, (30, 45), (57, 83), with_background=True,
                          pixels_per_chunk=pixels_per_chunk)
    assert torch.equal(maps.labels, full.argmax(0))
    assert torch.equal(maps.best, full.max(0).values)
    assert torch.equal(maps.background, sem_seg_postprocess(scores[-1:], (30, 45), 57, 83)[0])


def _image(h, w, seed=0):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("opts", [
    (),
    ("MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE", "False"),  # mmsegmentation's order
    ("MODEL.SAN.SLIDING_WINDOW.SIZE", "64", "MODEL.SAN.SLIDING_WINDOW.STRIDE", "32"),
], ids=["default", "resize-after", "sliding-window"])
@pytest.mark.parametrize("rejection", [{}, {"unknown_if_background": True, "unknown_threshold": 0.2}],
                         ids=["plain", "rejection"])
def test_the_model_gives_the_labels_of_its_scores(opts, rejection):
    model, _ = build_tiny_san(*opts, seed=5)
    model.eval()
    record = {"image": _image(80, 112), "height": 61, "width": 97, "vocabulary": VOCABULARY,
              **rejection}
    with torch.no_grad():
        scores = model([record])[0]
        labels = model([{**record, "labels_only": True}])[0]
    assert "sem_seg" not in labels and labels["sem_seg_labels"].shape == (61, 97)
    assert torch.equal(labels["sem_seg_labels"], scores["sem_seg"].argmax(0))
    assert set(labels) == {"sem_seg_labels"} | (set(scores) - {"sem_seg"})
    for key in set(scores) - {"sem_seg"}:
        assert torch.equal(labels[key], scores[key]), key


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_labels")
    generate_synthetic_dataset(str(root), num_train=2, num_val=4, size=64)
    return register_synthetic_dataset(str(root), prefix="labels_only_synthetic")


def _evaluation_cfg(tmp_path, val, *opts):
    return get_san_cfg(str(TINY_CONFIG), [
        "MODEL.DEVICE", "cpu", "DATASETS.TEST", f"('{val}',)", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128", "OUTPUT_DIR", str(tmp_path),
        *opts])


def _outputs_seen(model, monkeypatch):
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda inputs: seen.extend(forward(inputs)) or seen[-len(inputs):])
    return seen


def test_evaluation_asks_for_labels_and_gives_the_same_metrics(tmp_path, synthetic, monkeypatch):
    _, val = synthetic
    cfg = _evaluation_cfg(tmp_path, val)
    torch.manual_seed(3)
    model = Trainer.build_model(cfg).eval()
    seen = _outputs_seen(model, monkeypatch)
    labels_run = Trainer.test(cfg, model)[val]["sem_seg"]
    assert seen and all(set(output) == {"sem_seg_labels"} for output in seen)
    labels_json = json.loads((tmp_path / "inference" / val / "sem_seg_predictions.json").read_text())

    seen.clear()  # an evaluator SAN does not know may read the scores: it gets them
    scores_dir = tmp_path / "scores"
    wrapped = DatasetEvaluators([SANSemSegEvaluator(val, distributed=False, output_dir=str(scores_dir))])
    scores_run = Trainer.test(cfg, model, evaluators=[wrapped])[val]["sem_seg"]
    assert seen and all("sem_seg" in output for output in seen)
    assert 0 < labels_run["mIoU"] < 100
    assert labels_run == scores_run
    assert labels_json == json.loads((scores_dir / "sem_seg_predictions.json").read_text())


def test_tta_gives_the_labels_of_its_averaged_scores(tmp_path, synthetic):
    _, val = synthetic
    cfg = _evaluation_cfg(tmp_path, val, "TEST.AUG.MIN_SIZES", "(48, 80)", "TEST.AUG.MAX_SIZE",
                          "200", "TEST.AUG.FLIP", "True")
    model = Trainer.build_model(cfg).eval()
    from san_d2.engine import InferenceMapper, records_with_dataset_name

    inputs = InferenceMapper(cfg, False)(records_with_dataset_name([val])[0])
    tta = SemanticSegmentorWithTTA(cfg, model)
    scores = tta([inputs])[0]["sem_seg"]
    labels = tta([{**inputs, "labels_only": True}])[0]
    assert set(labels) == {"sem_seg_labels"}
    assert torch.equal(labels["sem_seg_labels"], scores.argmax(0))


def test_the_predictor_without_scores_draws_the_same_labels():
    predictor = SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])
    rgb = np.random.default_rng(4).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    threshold = float(predictor.predict(rgb, VOCABULARY).scores.max(0).values.median())
    full = predictor.predict(rgb, VOCABULARY, unknown_threshold=threshold)
    light = predictor.predict(rgb, VOCABULARY, unknown_threshold=threshold, scores=False)
    assert light.scores is None and full.scores.shape == (5, 50, 70)
    assert np.array_equal(light.class_map, full.class_map)
    assert np.array_equal(light.unknown, full.unknown) and light.unknown.any()
    assert light.describe() == full.describe()


def test_the_evaluator_says_what_it_needs():
    evaluator = SANSemSegEvaluator.__new__(SANSemSegEvaluator)
    with pytest.raises(KeyError, match="'sem_seg_labels' or 'sem_seg'"):
        evaluator._predicted_labels({"instances": None})

"""Rejection ("none of these"), mask proposals, sliding windows, batches, synonyms and
vocabulary files."""
import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from torch.nn import functional as F

from san_d2 import SANPredictor
from san_d2.data.vocabulary import load_vocabulary_file, parse_vocabulary
from san_d2.evaluation import SANSemSegEvaluator
from san_d2.modeling.inference import window_boxes
from san_d2.modeling.vocabulary import check_vocabulary, class_names

from .conftest import TINY_CONFIG, build_tiny_san

VOCABULARY = ["sky", "grass", "road", "car"]


def _image(h, w, seed=0):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    model, _ = build_tiny_san(seed=11)
    return model.eval()


def _run(model, **record):
    with torch.no_grad():
        return model([{"vocabulary": VOCABULARY, **record}])[0]


# ------------------------------------------------------------------------------ rejection

def test_rejection_rules_are_what_the_docs_say(model):
    image = _image(64, 96)
    plain = _run(model, image=image)
    threshold = plain["sem_seg"].max(0).values.median().item()  # random weights: half below
    out = _run(model, image=image, unknown_threshold=threshold)
    assert torch.equal(out["sem_seg"], plain["sem_seg"])
    best = out["sem_seg"].max(0).values
    assert torch.equal(out["unknown"], best < threshold) and 0.3 < out["unknown"].float().mean() < 0.7
    both = _run(model, image=image, unknown_threshold=threshold, unknown_if_background=True)
    assert torch.equal(both["unknown"], (best < threshold) | (both["background"] >= best))
    # The background is the "no object" column combined like the classes: the scores of all
    # K + 1 columns sum to the masks' total probability.
    proposals = _run(model, image=image, proposals=True)
    total = proposals["proposal_masks"].sum(0)
    assert torch.allclose(out["sem_seg"].sum(0) + out["background"], total, atol=1e-5)


def test_predictor_marks_unknown_pixels_and_counts_them():
    predictor = SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    threshold = float(np.median(predictor.predict(rgb, VOCABULARY).scores.max(0).values))
    result = predictor.predict(rgb, VOCABULARY, unknown_threshold=threshold)
    assert result.unknown is not None and result.unknown.any()
    assert np.array_equal(result.class_map == -1, result.unknown)
    assert np.array_equal(result.class_map[~result.unknown],
                          result.scores.argmax(0).numpy()[~result.unknown])
    shares = result.pixel_shares()
    assert shares["unknown"] == pytest.approx(result.unknown.mean())
    assert "unknown" in result.describe()
    assert predictor.predict(rgb, VOCABULARY).unknown is None  # off by default


def test_unknown_pixels_are_wrong_for_the_evaluator(tmp_path):
    name = "unknown_eval_test"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg")
    label = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    Image.fromarray(label).save(tmp_path / "a.png")
    record = {"file_name": str(tmp_path / "a.jpg"), "sem_seg_file_name": str(tmp_path / "a.png")}
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(stuff_classes=["a", "b"], ignore_label=255)
    evaluator = SANSemSegEvaluator(name, distributed=False, output_dir=str(tmp_path))
    evaluator.reset()
    scores = torch.zeros(2, 4, 4)
    scores[0] = 1.0  # everything predicted "a"
    unknown = torch.zeros(4, 4, dtype=torch.bool)
    unknown[:, 3] = True  # the last column: "b" pixels marked unknown
    evaluator.process([record], [{"sem_seg": scores, "unknown": unknown}])
    results = evaluator.evaluate()["sem_seg"]
    # a: TP 8, predicted 12 (4 of them b), GT 8 -> IoU 8/12. b: TP 0, GT 8 -> 0 (not ignored).
    assert results["IoU-a"] == pytest.approx(100 * 8 / 12)
    assert results["IoU-b"] == 0.0
    assert results["pACC"] == pytest.approx(100 * 8 / 16) and "IoU-unknown" not in results
    saved = json.loads((tmp_path / "sem_seg_predictions.json").read_text())
    assert sorted(e["category_id"] for e in saved) == [-1, 0]
    DatasetCatalog.remove(name)


# ------------------------------------------------------------------------------ proposals

def test_proposals_recombine_into_the_scores(model):
    out = _run(model, image=_image(70, 90), height=35, width=45, proposals=True)
    masks, probs = out["proposal_masks"], out["proposal_classes"]
    assert masks.shape == (16, 35, 45) and probs.shape == (16, len(VOCABULARY) + 1)
    assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-6)
    recombined = torch.einsum("qk,qhw->khw", probs[:, :-1], masks)
    assert (recombined - out["sem_seg"]).abs().max() <= 1e-5


# ------------------------------------------------------------------------------ sliding window

def test_window_boxes_cover_the_image_with_the_given_stride():
    boxes = window_boxes(100, 250, 96, 64)
    assert {(t, b) for t, _, b, _ in boxes} == {(0, 96), (4, 100)}
    assert sorted({(l, r) for _, l, _, r in boxes}) == [(0, 96), (64, 160), (128, 224), (154, 250)]
    assert window_boxes(80, 90, 96, 64) == [(0, 0, 80, 90)]


def test_an_image_that_fits_one_window_is_exactly_whole_image_inference():
    plain, _ = build_tiny_san(seed=11)
    windowed, _ = build_tiny_san("MODEL.SAN.SLIDING_WINDOW.SIZE", "96", seed=11)
    image = _image(90, 96)
    assert torch.equal(_run(windowed.eval(), image=image)["sem_seg"],
                       _run(plain.eval(), image=image)["sem_seg"])


def test_sliding_windows_average_the_windows_scores(monkeypatch):
    model, _ = build_tiny_san("MODEL.SAN.SLIDING_WINDOW.SIZE", "64",
                              "MODEL.SAN.SLIDING_WINDOW.STRIDE", "32", seed=11)
    model.eval()
    image = _image(80, 130)
    seen = []
    predict = model._predict
    monkeypatch.setattr(model, "_predict", lambda x, v: seen.append(tuple(x.shape)) or predict(x, v))
    ours = _run(model, image=image, height=40, width=65)["sem_seg"]
    assert seen and all(shape[-2] <= 64 and shape[-1] <= 64 for shape in seen)

    monkeypatch.setattr(model, "sliding_window", (0, 0))  # each window as an image of its own
    total, count = torch.zeros(len(VOCABULARY), 80, 130), torch.zeros(80, 130)
    for top, left, bottom, right in window_boxes(80, 130, 64, 32):
        total[:, top:bottom, left:right] += _run(model, image=image[:, top:bottom, left:right])["sem_seg"]
        count[top:bottom, left:right] += 1
    expected = F.interpolate((total / count)[None], size=(40, 65), mode="bilinear",
                             align_corners=False)[0]
    assert (ours - expected).abs().max() <= 1e-5


def test_window_size_must_fit_the_padding():
    with pytest.raises(ValueError, match="multiple of MODEL.SAN.SIZE_DIVISIBILITY"):
        build_tiny_san("MODEL.SAN.SLIDING_WINDOW.SIZE", "100")


# ------------------------------------------------------------------------------ batches

def test_a_list_of_images_gives_the_single_image_results():
    predictor = SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size, dtype=np.uint8) for size in
              [(48, 64, 3), (48, 64, 3), (70, 33, 3), (20, 20)]]
    batch = predictor.predict(images, VOCABULARY)
    assert isinstance(batch, list) and len(batch) == 4
    for image, result in zip(images, batch):
        alone = predictor.predict(image, VOCABULARY)
        assert (result.scores - alone.scores).abs().max() <= 1e-6
        assert np.array_equal(result.class_map, alone.class_map)


# ------------------------------------------------------------------------------ synonyms

def test_typed_vocabularies_with_synonyms():
    assert parse_vocabulary("cat, dog,grass") == ["cat", "dog", "grass"]
    assert parse_vocabulary("black pickup truck, pickup truck; blue sky, sky") == [
        ("black pickup truck", "pickup truck"), ("blue sky", "sky")]
    assert parse_vocabulary("sky\ncar, automobile\n\n") == ["sky", ("car", "automobile")]
    with pytest.raises(ValueError, match="Duplicate class name 'sky'"):
        parse_vocabulary("blue sky, sky; sky")
    with pytest.raises(ValueError, match="empty synonym"):
        parse_vocabulary("car, ; sky")


def test_vocabulary_files(tmp_path):
    (tmp_path / "classes.txt").write_text("# my classes\nsky\n\ncar, automobile\n")
    assert load_vocabulary_file(tmp_path / "classes.txt") == ["sky", ("car", "automobile")]
    (tmp_path / "list.json").write_text(json.dumps(["sky", ["car", "automobile"]]))
    assert load_vocabulary_file(tmp_path / "list.json") == ["sky", ("car", "automobile")]
    (tmp_path / "map.json").write_text(json.dumps({"car": ["automobile"], "sky": []}))
    assert load_vocabulary_file(tmp_path / "map.json") == [("car", "automobile"), "sky"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: Vocabulary entry 0 is 1"):
        load_vocabulary_file(tmp_path / "bad.json")


def test_synonyms_average_their_embeddings(model, tmp_path):
    clf = model.ov_classifier
    single = clf.text_embeddings(["car", "automobile", "sky"])
    merged = clf.text_embeddings([("car", "automobile"), "sky"])
    expected = F.normalize((single[0] + single[1]) / 2, dim=-1)
    assert (merged[0] - expected).abs().max() <= 1e-6
    assert torch.equal(merged[1], single[2])  # a single name is unchanged
    assert class_names(check_vocabulary([("car", "automobile"), "sky"])) == ("car", "sky")


def test_persisted_embeddings_key_on_the_synonyms(tmp_path):
    model, _ = build_tiny_san("MODEL.SAN.TEXT_EMBEDDING_CACHE", str(tmp_path))
    clf = model.ov_classifier
    clf.text_embeddings(["car", "sky"])
    clf.text_embeddings([("car", "automobile"), "sky"])
    assert len(list(tmp_path.glob("*.pt"))) == 2
    fresh, _ = build_tiny_san("MODEL.SAN.TEXT_EMBEDDING_CACHE", str(tmp_path))
    before = fresh.ov_classifier.num_prompts_encoded
    fresh.ov_classifier.text_embeddings([("car", "automobile"), "sky"])
    assert fresh.ov_classifier.num_prompts_encoded == before  # read back, not encoded


def test_predict_reports_a_synonym_class_by_its_first_name():
    predictor = SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = predictor.predict(rgb, [("car", "automobile"), "sky"])
    assert result.vocabulary == ("car", "sky") and result.scores.shape[0] == 2

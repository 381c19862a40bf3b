"""Against mmsegmentation itself: a tiny SAN that mmseg 1.2.2 trained two iterations and saved
as it releases models (tests/data/mmseg_tiny: the file, in a compact form rebuilt here, three
pictures and mmseg's own outputs of `inference_model` and of its ms+flip test, made by
make_fixtures.py there), loaded as it is and run with the mmseg protocol."""
import json

import numpy as np
import pytest
import torch

from san_d2 import SANPredictor
from san_d2.modeling.test_time_augmentation import build_tta_model

from .conftest import TEST_DATA, TINY_CONFIG
from .mmseg_file import rebuild_mmseg_checkpoint

FIXTURES = TEST_DATA / "mmseg_tiny"
META = json.loads((FIXTURES / "outputs_meta.json").read_text())
# The tiny architecture under mmseg's protocol (mmseg builds the side adapter's positional
# embedding for 640 x 640 inputs whatever its config says).
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.SIDE_ADAPTER.IMAGE_SIZE", "640", "INPUT.TEST_RESIZE", "mmseg",
        "INPUT.MIN_SIZE_TEST", "640", "INPUT.MAX_SIZE_TEST", "2560",
        "MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE", "False", "TEST.AUG.RECIPE", "mmseg"]
# mmseg's random tiny model is sensitive: perturbing its weights by 1e-7 moves its scores (up
# to ~9) by up to 2.2e-5; summation orders differ between the two implementations.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    checkpoint = rebuild_mmseg_checkpoint(FIXTURES / "san_tiny_mmseg.npz",
                                          tmp_path_factory.mktemp("mmseg") / "san_tiny_mmseg.pth")
    return SANPredictor(str(TINY_CONFIG), str(checkpoint), opts=OPTS)


@pytest.mark.parametrize("vocab", [0, 1])
@pytest.mark.parametrize("image", [0, 1, 2])
def test_scores_equal_mmsegs(predictor, vocab, image):
    vocabulary = META["vocabularies"][vocab]
    ours = predictor.predict(str(FIXTURES / f"image_{image}.png"), vocabulary)
    theirs = np.load(FIXTURES / f"out_vocab{vocab}_image{image}_seg_logits.npy")
    assert ours.scores.shape == theirs.shape
    assert np.abs(ours.scores.numpy() - theirs).max() <= TOLERANCE
    labels = np.load(FIXTURES / f"out_vocab{vocab}_image{image}_pred.npy")
    assert (ours.class_map == labels).mean() >= 0.999  # ties within the tolerance may flip


def test_ms_flip_equals_mmsegs(predictor):
    vocabulary = META["vocabularies"][1]
    path = str(FIXTURES / "image_0.png")
    record = {**predictor._model_input(np.zeros((97, 131, 3), np.uint8)), "file_name": path,
              "vocabulary": vocabulary}
    with torch.inference_mode():
        ours = build_tta_model(predictor.cfg, predictor.model)([record])[0]["sem_seg"]
    theirs = np.load(FIXTURES / "tta_vocab1_image0_seg_logits.npy")  # the 12 softmaxes' mean
    assert np.abs(ours.numpy() - theirs).max() <= TOLERANCE
    assert np.array_equal(ours.argmax(0).numpy(), np.load(FIXTURES / "tta_vocab1_image0_pred.npy"))

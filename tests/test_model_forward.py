"""SAN's forward contract: inference shapes and invariances, training, and bad inputs."""
import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.structures import BitMasks, Instances

from .conftest import build_tiny_san

VOCABULARY = ["sky", "grass", "road", "car"]


@pytest.fixture(scope="module")
def model():
    model, _ = build_tiny_san(seed=4)
    return model.eval()


def _image(h, w, seed):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _infer(model, inputs):
    with torch.no_grad():
        return model(inputs)


def test_eval_shapes_sizes_and_determinism(model):
    a, b = _image(70, 90, 0), _image(45, 130, 1)
    inputs = [{"image": a, "vocabulary": VOCABULARY},
              {"image": b, "vocabulary": VOCABULARY, "height": 90, "width": 260}]
    first = _infer(model, inputs)
    assert first[0]["sem_seg"].shape == (4, 70, 90)
    assert first[1]["sem_seg"].shape == (4, 90, 260)
    assert first[0]["sem_seg"].dtype == torch.float32
    # Scores are sums over proposals of class probability x mask probability.
    assert (first[0]["sem_seg"] >= 0).all()
    second = _infer(model, inputs)
    for x, y in zip(first, second):
        assert torch.equal(x["sem_seg"], y["sem_seg"])


def test_batch_invariance(model):
    images = [_image(70, 90, 0), _image(45, 130, 1), _image(64, 96, 2)]
    batched = _infer(model, [{"image": im, "vocabulary": VOCABULARY} for im in images])
    for image, result in zip(images, batched):
        alone = _infer(model, [{"image": image, "vocabulary": VOCABULARY}])[0]
        assert torch.allclose(alone["sem_seg"], result["sem_seg"], atol=1e-6)


def test_vocabulary_from_dataset_metadata(model):
    name = "san_d2_test_vocab_dataset"
    MetadataCatalog.get(name).set(stuff_classes=[" sky", "grass ", "road", "car"])
    image = _image(64, 64, 3)
    from_meta = _infer(model, [{"image": image, "meta": {"dataset_name": name}}])[0]["sem_seg"]
    explicit = _infer(model, [{"image": image, "vocabulary": VOCABULARY}])[0]["sem_seg"]
    assert torch.equal(from_meta, explicit)


def test_text_embeddings_are_cached_per_vocabulary(model):
    clf = model.ov_classifier
    first = clf.text_embeddings(["cat", "dog"])
    assert clf.text_embeddings(["cat", "dog"]) is first
    other = clf.text_embeddings(["dog", "cat"])
    assert torch.allclose(other, first.flip(0), atol=1e-6)
    assert not torch.equal(clf.text_embeddings(["cat", "bird"])[1], first[1])
    clf.load_state_dict(clf.state_dict())
    assert clf.text_embeddings(["cat", "dog"]) is not first


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ([{"image": _image(32, 32, 0), "vocabulary": []}], ValueError, "non-empty list"),
        ([{"image": _image(32, 32, 0), "vocabulary": "cat,dog"}], ValueError, "non-empty list"),
        ([{"image": _image(32, 32, 0), "vocabulary": ["cat", " "]}], ValueError, "entry 1"),
        ([{"image": _image(32, 32, 0), "vocabulary": ["cat", "dog", "cat "]}], ValueError,
         "Duplicate class name 'cat' at positions 0 and 2"),
        ([{"image": _image(32, 32, 0)}], ValueError, "neither 'vocabulary'"),
        ([{"image": _image(32, 32, 0).float(), "vocabulary": ["cat"]}], ValueError, "uint8"),
        ([{"image": _image(32, 32, 0)[:1], "vocabulary": ["cat"]}], ValueError, r"\(3, H, W\)"),
        ([{"image": _image(32, 32, 0)[0], "vocabulary": ["cat"]}], ValueError, r"\(3, H, W\)"),
        ([{"file_name": "x.jpg", "vocabulary": ["cat"]}], TypeError, "'image'"),
        ([{"image": _image(32, 32, 0), "vocabulary": ["cat"]},
          {"image": _image(32, 32, 0), "vocabulary": ["dog"]}], ValueError, "share one vocabulary"),
        ([], ValueError, "empty batch"),
    ],
)
def test_bad_inputs_fail_clearly(model, inputs, error, match):
    with pytest.raises(error, match=match):
        _infer(model, inputs)


def _training_batch():
    """Two 64x64 images: class 0 above a diagonal, class 2 below (masks as both formats)."""
    batch = []
    for i, flip in enumerate([False, True]):
        label = torch.zeros(64, 64, dtype=torch.int64)
        rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
        label[(rows > cols) ^ flip] = 2
        label[:4] = 255
        image = torch.stack([(label == 2).to(torch.uint8) * 200 + 20] * 3)
        if i == 0:
            batch.append({"image": image, "sem_seg": label, "vocabulary": VOCABULARY})
        else:
            instances = Instances((64, 64))
            instances.gt_classes = torch.tensor([0, 2])
            instances.gt_masks = BitMasks(torch.stack([label == 0, label == 2]))
            batch.append({"image": image, "instances": instances, "vocabulary": VOCABULARY})
    return batch


def test_training_reduces_the_loss_and_leaves_frozen_weights_alone():
    model, _ = build_tiny_san(seed=5)
    model.train()
    batch = _training_batch()
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    totals = []
    for _ in range(30):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0",
                           "loss_dice_0"}
    assert sum(totals[-5:]) / 5 < 0.6 * sum(totals[:5]) / 5, totals
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None, name
            assert torch.equal(param, frozen[name]), name
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert "ov_classifier.bg_embed" in grads
    assert "clip_visual_extractor.positional_embedding" in grads
    assert any(n.startswith("side_adapter_network.vit_model.") for n in grads)
    assert not any(n.startswith(("clip_rec_head.", "ov_classifier.transformer")) for n in grads)


def test_training_vocabulary_must_match_num_classes():
    model, _ = build_tiny_san()
    model.train()
    batch = _training_batch()
    for record in batch:
        record["vocabulary"] = VOCABULARY + ["tree"]
    with pytest.raises(ValueError, match="NUM_CLASSES is 4"):
        model(batch)


def test_sem_seg_targets_ignore_the_datasets_ignore_label():
    # PC-459 and ADE-847 label maps ignore 65535, which is not detectron2's 255.
    MetadataCatalog.get("forward_test_65535").set(stuff_classes=VOCABULARY, ignore_label=65535)
    model, _ = build_tiny_san()
    model.train()
    label = torch.full((64, 64), 65535, dtype=torch.int64)
    label[:32] = 1
    label[32:, :16] = 3
    record = {"image": _image(64, 64, 0), "sem_seg": label,
              "meta": {"dataset_name": "forward_test_65535"}}
    classes, masks = model._class_masks(record, 0)
    assert classes.tolist() == [1, 3]
    assert torch.equal(masks, torch.stack([label == 1, label == 3]))
    losses = model([record])
    assert all(torch.isfinite(v) for v in losses.values())

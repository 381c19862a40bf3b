"""The optimised inference path computes the plain SAN of the paper's code (float32, 1e-5).

The plain pipeline below does what the paper's code does: one (N, N) attention mask per image
and head through open_clip's own blocks, all mask logits up-sampled to the padded size,
cropped and resized, then combined with every class; text embeddings from open_clip's
``encode_text`` over the full context. The extractor and the side adapter are the model's own
modules (they are checked against float64 references in test_model_stages.py).
"""
import pytest
import torch
from detectron2.modeling.postprocessing import sem_seg_postprocess
from torch.nn import functional as F

from .conftest import build_tiny_san

TOL = 1e-5
VOCABULARY = ["sky", "grass", "road", "red car", "tree"]


def plain_text_classifier(model, vocabulary):
    clf = model.ov_classifier
    prompts = [t.format(name) for name in vocabulary for t in clf.templates]
    tokens = clf.tokenizer(prompts)
    x = clf.token_embedding(tokens) + clf.positional_embedding
    x = clf.ln_final(clf.transformer(x, attn_mask=clf.attn_mask))
    x = x[torch.arange(len(prompts)), tokens.argmax(-1)] @ clf.text_projection
    x = F.normalize(x, dim=-1).reshape(len(vocabulary), len(clf.templates), -1).mean(1)
    classifier = torch.cat([F.normalize(x, dim=-1), clf.bg_embed])
    return F.normalize(classifier, dim=-1) * clf.logit_scale.exp()


def plain_recognition(model, feature, bias):
    head = model.clip_rec_head
    b, d, h, w = feature.spatial.shape
    heads, q = bias.shape[1], bias.shape[2]
    bias = F.adaptive_max_pool2d(bias.flatten(1, 2), (h, w)).reshape(b, heads, q, h * w)
    n = q + 1 + h * w
    mask = torch.zeros(b, heads, n, n)
    mask[..., :q] = -100.0
    mask[..., range(q), range(q)] = 0.0
    mask[..., :q, q] = -100.0
    mask[..., :q, q + 1:] = bias
    x = torch.cat([feature.cls_token[:, None].expand(b, q, d), feature.cls_token[:, None],
                   feature.spatial.flatten(2).transpose(1, 2)], dim=1)
    for block in head.resblocks:
        x = block(x, attn_mask=mask.flatten(0, 1))
    return F.normalize(head.ln_post(x[:, :q]) @ head.proj, dim=-1)


def plain_san(model, record, vocabulary, before_inference):
    image = record["image"]
    x = (image.float() - model.pixel_mean) / model.pixel_std
    height, width = image.shape[-2:]
    padded = (-(-height // 32) * 32, -(-width // 32) * 32)
    x = F.pad(x, (0, padded[1] - width, 0, padded[0] - height))[None]
    clip_input = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False,
                               recompute_scale_factor=False)
    features = model.clip_visual_extractor(clip_input)
    masks, biases = model.side_adapter_network(x, features)
    embeddings = plain_recognition(model, features[-1], biases[-1][0])
    logits = torch.einsum("bqc,nc->bqn", embeddings, plain_text_classifier(model, vocabulary))
    probs = logits[0].softmax(-1)[:, :-1]
    up = F.interpolate(masks[-1], size=padded, mode="bilinear", align_corners=False)[0]
    output = (record.get("height", height), record.get("width", width))
    if before_inference:
        up = sem_seg_postprocess(up, (height, width), *output)
        return torch.einsum("qc,qhw->chw", probs, up.sigmoid())
    scores = torch.einsum("qc,qhw->chw", probs, up.sigmoid())
    return sem_seg_postprocess(scores, (height, width), *output)


@pytest.mark.parametrize("before_inference", [True, False])
def test_inference_equals_the_plain_pipeline(before_inference):
    # Two recognition blocks, so that what the cls and patch rows compute in the first one
    # reaches the output.
    model, _ = build_tiny_san("MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE",
                              str(before_inference), "MODEL.SAN.TEXT_EMBEDDING_CACHE", "",
                              "MODEL.SAN.FEATURE_LAST_LAYER_IDX", "2",
                              "MODEL.SIDE_ADAPTER.FUSION_MAP", '["0->0", "1->1", "2->2"]', seed=7)
    assert len(model.clip_rec_head.resblocks) == 2
    model.eval()
    generator = torch.Generator().manual_seed(1)
    # Stronger biases and mask logits than the random initialisation gives, so that the
    # attention bias and the sigmoid matter.
    with torch.no_grad():
        model.side_adapter_network.mask_decoder.bias_scaling.weight.fill_(8.0)
    records = [
        {"image": torch.randint(0, 256, (3, 75, 110), dtype=torch.uint8, generator=generator)},
        {"image": torch.randint(0, 256, (3, 131, 64), dtype=torch.uint8, generator=generator),
         "height": 50, "width": 90},
        {"image": torch.randint(0, 256, (3, 96, 96), dtype=torch.uint8, generator=generator),
         "height": 96, "width": 96},
    ]
    with torch.inference_mode():
        ours = model([dict(r, vocabulary=VOCABULARY) for r in records])
        for record, result in zip(records, ours):
            expected = plain_san(model, record, VOCABULARY, before_inference)
            assert result["sem_seg"].shape == expected.shape
            assert (result["sem_seg"] - expected).abs().max() <= TOL
            assert expected.std() > 1e-3  # the comparison is not between constants


def test_bf16_inference_stays_close_and_returns_float32():
    model, _ = build_tiny_san("MODEL.SAN.INFERENCE_DTYPE", "bf16", seed=7)
    model.eval()
    record = {"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8,
                                     generator=torch.Generator().manual_seed(2)),
              "vocabulary": VOCABULARY}
    with torch.inference_mode():
        fast = model([record])[0]["sem_seg"]
        model.inference_dtype = "fp32"
        exact = model([record])[0]["sem_seg"]
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert 0 < (fast - exact).abs().max() < 0.05


def test_unknown_inference_dtype_is_an_error():
    with pytest.raises(ValueError, match="INFERENCE_DTYPE 'fp8'"):
        build_tiny_san("MODEL.SAN.INFERENCE_DTYPE", "fp8")


def test_compiled_networks_compute_the_same(monkeypatch):
    # Dynamo traces the real forwards; the "eager" backend skips inductor's slow C++ build.
    compiled = []

    def compile_eagerly(fn):
        compiled.append(fn.__self__)
        return real_compile(fn, backend="eager")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_eagerly)
    model, _ = build_tiny_san("MODEL.SAN.COMPILE", "True", seed=7)
    plain, _ = build_tiny_san(seed=7)
    assert {type(m).__name__ for m in compiled} == {
        "ClipVisualFeatureExtractor", "RegionwiseSideAdapterNetwork", "RecWithAttnBiasHead"}
    record = {"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8,
                                     generator=torch.Generator().manual_seed(2)),
              "vocabulary": VOCABULARY}
    with torch.inference_mode():
        ours = model.eval()([record])[0]["sem_seg"]
        expected = plain.eval()([record])[0]["sem_seg"]
    assert (ours - expected).abs().max() <= TOL

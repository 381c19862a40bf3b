"""Each stage of SAN against an independent float64 reference written from the paper's code
(MendelXu/SAN, `san/model`) and PyTorch's conventions."""
import math

import open_clip
import pytest
import torch
from torch.nn import functional as F

from san_d2.modeling.clip_visual import build_recognition_attn_mask
from san_d2.modeling.layers import resize_grid_pos_embed

from .conftest import build_tiny_san
from .reference_math import clip_block, interp_matrix, layer_norm, resize2d

TOL = 1e-6


@pytest.fixture(scope="module")
def tiny():
    model, cfg = build_tiny_san(seed=3)
    return model.double().eval(), cfg


def test_interpolation_reference_agrees_with_torch_conventions():
    # Guards the reference itself against torch on random data (float64).
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    for mode in ("bilinear", "bicubic"):
        ours = resize2d(x, (11, 5), mode)
        theirs = F.interpolate(x, size=(11, 5), mode=mode, align_corners=False)
        assert (ours - theirs).abs().max() < 1e-12


@pytest.mark.parametrize("grid, target", [((14, 14), (20, 27)), ((14, 14), (14, 14)), ((24, 24), (9, 13))])
def test_positional_embedding_resize(grid, target):
    width = 8
    pos = torch.randn(1 + grid[0] * grid[1], width, dtype=torch.float64)
    ours = resize_grid_pos_embed(pos, grid, target, num_prefix=1)
    rows = pos[1:].reshape(grid[0], grid[1], width).permute(2, 0, 1)
    expected = resize2d(rows, target, "bicubic").permute(1, 2, 0).reshape(-1, width)
    assert torch.equal(ours[0], pos[0])
    assert (ours[1:] - expected).abs().max() <= TOL


def test_clip_input_resize_uses_the_scale_factor_itself():
    # 0.7 on 75 px: output floor(52.5) = 52, sampled with 1/0.7 px steps, not 75/52.
    x = torch.randn(1, 3, 75, 61, dtype=torch.float64)
    ours = F.interpolate(x, scale_factor=0.7, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)
    expected = resize2d(x, (52, 42), "bilinear", scale=(1 / 0.7, 1 / 0.7))
    assert ours.shape[-2:] == (52, 42)
    assert (ours - expected).abs().max() <= TOL
    wrong = resize2d(x, (52, 42), "bilinear")
    assert (wrong - expected).abs().max() > 1e-3


def test_attention_mask_layout():
    b, h, q, length = 2, 3, 4, 5
    bias = torch.randn(b, h, q, length, dtype=torch.float64)
    n = q + 1 + length
    rows = build_recognition_attn_mask(bias)
    assert rows.sos_rows.shape == (b, h, q, n) and rows.other_rows.shape == (1, 1, 1, n)
    ours = torch.cat([rows.sos_rows, rows.other_rows.expand(b, h, n - q, n)], dim=2)
    expected = torch.zeros(b, h, n, n, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for row in range(n):
                for col in range(n):
                    if col < q:  # sos columns: only a sos token's own column is open
                        value = 0.0 if row == col else -100.0
                    elif row < q and col == q:  # sos rows do not see cls
                        value = -100.0
                    elif row < q:  # sos rows x patch columns: the bias
                        value = bias[bi, hi, row, col - q - 1].item()
                    else:
                        value = 0.0
                    expected[bi, hi, row, col] = value
    assert torch.equal(ours, expected)


def test_recognition_head_against_reference(tiny):
    model, _ = tiny
    head = model.clip_rec_head
    b, d, h, w = 2, 64, 3, 4
    q = 5
    cls_token = torch.randn(b, d, dtype=torch.float64)
    spatial = torch.randn(b, d, h, w, dtype=torch.float64)
    bias = torch.randn(b, head.num_heads, q, 6, 8, dtype=torch.float64)
    from san_d2.modeling.clip_visual import ClipFeature

    ours = head(ClipFeature(cls_token, spatial), [bias])

    pooled = F.max_pool2d(bias.flatten(1, 2), kernel_size=2).reshape(b, head.num_heads, q, h * w)
    mask = build_mask_reference(pooled)
    x = torch.cat([cls_token[:, None].expand(b, q, d), cls_token[:, None],
                   spatial.flatten(2).transpose(1, 2)], dim=1)
    for block in head.resblocks:
        x = clip_block(x, block, mask)
    p = {k: v.double() for k, v in head.state_dict().items()}
    y = layer_norm(x[:, :q], p["ln_post.weight"], p["ln_post.bias"]) @ p["proj"]
    expected = y / y.norm(dim=-1, keepdim=True)
    assert (ours - expected).abs().max() <= TOL


def build_mask_reference(bias):
    b, heads, q, length = bias.shape
    n = q + 1 + length
    mask = torch.zeros(b, heads, n, n, dtype=torch.float64)
    mask[..., :q] = -100.0
    mask[..., range(q), range(q)] = 0.0
    mask[..., :q, q] = -100.0
    mask[..., :q, q + 1:] = bias
    return mask


def test_text_encoder_matches_open_clip(tiny):
    model, _ = tiny
    clf = model.ov_classifier
    clip = open_clip.create_model("san-tiny-clip-vit-p16", pretrained=None)
    clip.load_state_dict({k: v for k, v in clf.state_dict().items() if k != "bg_embed"},
                         strict=False)
    clip = clip.double()
    tokens = clf.tokenizer(["a photo of a cat.", "a photo of the small black dog."])
    expected = clip.encode_text(tokens)  # open_clip runs all 77 positions
    assert (clf.encode_text(tokens) - expected).abs().max() <= TOL


def test_classifier_against_reference(tiny):
    model, _ = tiny
    clf = model.ov_classifier
    vocabulary = ["sky", " grass ", "red car"]
    names = ["sky", "grass", "red car"]
    per_prompt = clf.encode_text(clf.tokenizer([t.format(n) for n in names for t in clf.templates]))
    per_prompt = per_prompt / per_prompt.norm(dim=-1, keepdim=True)
    text = per_prompt.reshape(3, len(clf.templates), -1).mean(1)
    text = text / text.norm(dim=-1, keepdim=True)
    classifier = torch.cat([text, clf.bg_embed.double()])
    classifier = classifier / classifier.norm(dim=-1, keepdim=True) * clf.logit_scale.double().exp()
    emb = F.normalize(torch.randn(2, 6, classifier.shape[1], dtype=torch.float64), dim=-1)
    expected = emb @ classifier.T
    ours = clf(emb, vocabulary)
    assert ours.shape == (2, 6, 4)
    assert (ours - expected).abs().max() <= TOL


@pytest.mark.parametrize("before", [True, False])
def test_postprocessing_against_reference(tiny, before):
    model, _ = tiny
    model.sem_seg_postprocess_before_inference = before
    q, k = 5, 3
    logits = torch.randn(q, k + 1, dtype=torch.float64)
    masks = torch.randn(q, 6, 8, dtype=torch.float64)
    padded, image, output = (96, 128), (90, 110), (45, 70)
    ours = model._semantic_inference(logits, masks, padded, image, output)

    probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    probs = probs[:, :-1]
    up = resize2d(masks, padded, "bilinear")
    if before:
        m = resize2d(up[:, : image[0], : image[1]], output, "bilinear")
        expected = torch.einsum("qc,qhw->chw", probs, 1 / (1 + torch.exp(-m)))
    else:
        s = torch.einsum("qc,qhw->chw", probs, 1 / (1 + torch.exp(-up)))
        expected = resize2d(s[:, : image[0], : image[1]], output, "bilinear")
    model.sem_seg_postprocess_before_inference = True
    assert ours.shape == (k, *output)
    assert (ours - expected).abs().max() <= TOL


def test_feature_extractor_against_reference(tiny):
    model, _ = tiny
    ext = model.clip_visual_extractor
    images = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    ours = ext(images)
    p = {k: v.double() for k, v in ext.state_dict().items()}
    patches = F.conv2d(images, p["conv1.weight"], stride=16)  # (1, D, 3, 5)
    tokens = torch.cat([p["class_embedding"][None, None], patches.flatten(2).transpose(1, 2)], 1)
    grid = p["positional_embedding"][1:].reshape(14, 14, -1).permute(2, 0, 1)
    pos = torch.cat([p["positional_embedding"][:1],
                     resize2d(grid, (3, 5), "bicubic").permute(1, 2, 0).reshape(15, -1)])
    x = layer_norm(tokens + pos, p["ln_pre.weight"], p["ln_pre.bias"])
    zero = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    assert (ours[0].cls_token - x[:, 0]).abs().max() <= TOL
    for i, block in enumerate(ext.resblocks, start=1):
        x = clip_block(x, block, zero)
        assert (ours[i].spatial - x[:, 1:].transpose(1, 2).reshape(1, -1, 3, 5)).abs().max() <= TOL


def test_mask_decoder_against_reference(tiny):
    model, _ = tiny
    dec = model.side_adapter_network.mask_decoder
    b, s, q, h, w = 2, 64, 5, 3, 4
    query = torch.randn(b, q, s, dtype=torch.float64)
    x = torch.randn(b, s, h, w, dtype=torch.float64)
    masks, biases = dec(query, x)

    def mlp(layers, v):  # v: (..., C) channels last
        for i, layer in enumerate(layers):
            weight = layer.weight.reshape(layer.weight.shape[0], -1)
            v = v @ weight.T + layer.bias
            v = v.clamp(min=0) if i < len(layers) - 1 else v
        return v

    q_emb = mlp(dec.query_mlp.layers, query)  # (b, q, C)
    pix = mlp(dec.pix_mlp.layers, x.permute(0, 2, 3, 1))  # (b, h, w, C)
    attn = mlp(dec.attn_mlp.layers, x.permute(0, 2, 3, 1))  # (b, h, w, L*H*C)
    c = dec.embed_channels
    expected_masks = torch.zeros(b, q, h, w, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            expected_masks[bi, qi] = (pix[bi] * q_emb[bi, qi]).sum(-1)
    assert (masks - expected_masks).abs().max() <= TOL
    scale_w, scale_b = dec.bias_scaling.weight.item(), dec.bias_scaling.bias.item()
    assert len(biases) == dec.total_layers
    for layer in range(dec.total_layers):
        for head in range(dec.total_heads):
            start = (layer * dec.total_heads + head) * c  # channels: layer, then head, then feature
            feats = attn[..., start:start + c]
            expected = torch.einsum("bqc,bhwc->bqhw", q_emb, feats) * scale_w + scale_b
            assert (biases[layer][:, head] - expected).abs().max() <= TOL


def test_side_adapter_orchestration_against_reference(tiny):
    # The side ViT's blocks are timm's; what is checked is their composition: positional terms
    # (re-added before every block), fusion of CLIP features and the emitted stages.
    model, _ = tiny
    san = model.side_adapter_network
    images = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    clip_features = model.clip_visual_extractor(
        F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False,
                      recompute_scale_factor=False))
    ours = san.encode(images, clip_features)

    p = {k: v.double() for k, v in san.state_dict().items()}
    h, w = 3, 5
    patches = F.conv2d(images, p["vit_model.patch_embed.proj.weight"],
                       p["vit_model.patch_embed.proj.bias"], stride=16)
    width = patches.shape[1]
    grid = p["vit_model.pos_embed"][0].reshape(14, 14, width).permute(2, 0, 1)
    pos = torch.cat([p["query_pos_embed"][0],
                     resize2d(grid, (h, w), "bicubic").permute(1, 2, 0).reshape(h * w, width)])
    x = torch.cat([p["query_embed"][0], patches[0].flatten(1).T]) + pos
    q = san.num_queries

    def fuse(stage, x):
        clip_idx = {0: 0, 1: 1, 2: 2, 3: 3}.get(stage)
        if clip_idx is None:
            return x
        f = clip_features[clip_idx].spatial[0]  # (D, hc, wc)
        prefix = f"fusion_layers.layer_{stage}.input_proj."
        normed = layer_norm(f.permute(1, 2, 0), p[prefix + "0.weight"], p[prefix + "0.bias"], 1e-6)
        proj = normed @ p[prefix + "1.weight"][:, :, 0, 0].T + p[prefix + "1.bias"]
        proj = resize2d(proj.permute(2, 0, 1), (h, w), "bilinear")
        return torch.cat([x[:q], x[q:] + proj.flatten(1).T])

    x = fuse(0, x)
    expected = []
    for k, block in enumerate(san.vit_model.blocks, start=1):
        x = block(x[None])[0]
        x = fuse(k, x)
        if k in (7, 8):
            expected.append((x[:q], x[q:].T.reshape(width, h, w)))
        if k < 8:
            x = x + pos
    assert len(ours) == 2
    for (oq, om), (eq, em) in zip(ours, expected):
        assert (oq[0] - eq).abs().max() <= TOL and (om[0] - em).abs().max() <= TOL

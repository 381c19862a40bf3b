"""CLIP's visual tower split in two: the feature extractor and the recognition head.

Both reuse open_clip's modules (``conv1``, ``resblocks``, ``ln_post``, ...), so the state-dict
names are open_clip's own under the prefixes ``clip_visual_extractor.`` and ``clip_rec_head.``.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .layers import adaptive_max_pool2d, exporting, resize_grid_pos_embed

__all__ = [
    "ClipFeature",
    "ClipVisualFeatureExtractor",
    "RecWithAttnBiasHead",
    "ATTN_BIAS_DOWNSAMPLERS",
    "RecognitionAttnMask",
    "build_recognition_attn_mask",
    "biased_block_forward",
]

# Additive attention mask value that keeps a token from attending (the paper's choice, not -inf).
BLOCKED = -100.0


class ClipFeature(NamedTuple):
    """One CLIP layer's output: cls token (B, D) and patch tokens as a map (B, D, h, w)."""

    cls_token: torch.Tensor
    spatial: torch.Tensor


def freeze_except(module: nn.Module, trainable_fragments: Sequence[str]) -> None:
    """Freezes every parameter whose name contains none of ``trainable_fragments``."""
    for name, param in module.named_parameters():
        param.requires_grad = any(fragment in name for fragment in trainable_fragments)


class ClipVisualFeatureExtractor(nn.Module):
    """CLIP's visual stem and its first ``last_layer_idx`` residual blocks."""

    def __init__(self, visual: nn.Module, last_layer_idx: int, frozen_exclude: Sequence[str]):
        """
        Args:
            visual: open_clip ``VisionTransformer`` (its modules are shared, not copied).
            last_layer_idx: number of blocks to run (FEATURE_LAST_LAYER_IDX).
            frozen_exclude: name fragments of parameters that stay trainable.
        """
        super().__init__()
        num_blocks = len(visual.transformer.resblocks)
        if not 0 < last_layer_idx < num_blocks:
            raise ValueError(f"FEATURE_LAST_LAYER_IDX must be in 1..{num_blocks - 1} for this "
                             f"CLIP (it has {num_blocks} blocks), got {last_layer_idx}.")
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.resblocks = nn.ModuleList(visual.transformer.resblocks[:last_layer_idx])
        self.grid_size = tuple(visual.grid_size)
        self.patch_size = self.conv1.kernel_size[0]
        self.num_heads = self.resblocks[0].attn.num_heads
        self._resized_positions = {}
        freeze_except(self, frozen_exclude)

    def forward(self, images: torch.Tensor) -> List[ClipFeature]:
        """
        Args:
            images: (B, 3, H, W) normalised.
        Returns:
            ``last_layer_idx + 1`` features: index 0 after ``ln_pre``, index i after block i.
        """
        x = self.conv1(images)  # (B, D, h, w); pixels that do not fill a patch are dropped
        batch, width, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(batch, 1, width)
        x = torch.cat([cls, x], dim=1)
        x = self.ln_pre(x + self._positional_embedding((h, w)).to(x.dtype))

        features = [self._to_feature(x, h, w)]
        for block in self.resblocks:
            x = block(x)
            features.append(self._to_feature(x, h, w))
        return features

    def _positional_embedding(self, grid: Tuple[int, int]) -> torch.Tensor:
        """(1 + h * w, D) positional embedding for an h x w grid. Without autograd the resized
        embedding is kept per grid (it changes only with the weights): its bicubic resize
        costs a few ms per image. Traced (compile, export) it is computed in the graph."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or exporting():
            return resize_grid_pos_embed(self.positional_embedding, self.grid_size, grid, 1)
        weights = self.positional_embedding
        key = (grid, weights.device, weights.dtype, weights._version, weights.data_ptr())
        if key not in self._resized_positions:
            if len(self._resized_positions) >= 8:  # a few MB each: keep the latest grids
                self._resized_positions.clear()
            self._resized_positions[key] = resize_grid_pos_embed(weights, self.grid_size, grid, 1)
        return self._resized_positions[key]

    @staticmethod
    def _to_feature(tokens: torch.Tensor, h: int, w: int) -> ClipFeature:
        batch, _, width = tokens.shape
        return ClipFeature(tokens[:, 0], tokens[:, 1:].transpose(1, 2).reshape(batch, width, h, w))


def _interpolate(mode: str):
    return lambda x, size: F.interpolate(x, size=size, mode=mode, align_corners=False)


# MODEL.SAN.REC_DOWNSAMPLE_METHOD -> how an attention bias map is brought to CLIP's grid.
ATTN_BIAS_DOWNSAMPLERS = {
    "max": adaptive_max_pool2d,
    "avg": F.adaptive_avg_pool2d,
    "bilinear": _interpolate("bilinear"),
    "bicubic": _interpolate("bicubic"),
    "nearest": lambda x, size: F.interpolate(x, size=size, mode="nearest"),
}


def downsample_attn_bias(bias: torch.Tensor, size: Tuple[int, int], method: str) -> torch.Tensor:
    """Brings an attention bias (B, H, Q, hs, ws) to CLIP's grid: (B, H, Q, h, w)."""
    batch, heads, queries = bias.shape[:3]
    x = ATTN_BIAS_DOWNSAMPLERS[method](bias.flatten(1, 2), size)
    return x.reshape(batch, heads, queries, *size)


class RecognitionAttnMask(NamedTuple):
    """The recognition head's additive attention mask over [Q sos, cls, L patches], by rows.

    Attributes:
        sos_rows: (B, H, Q, N), N = Q + 1 + L: a sos token sees only itself among the sos
            tokens, not the cls token, and the patches through the attention bias.
        other_rows: (1, 1, 1, N), the same for every cls and patch row: the sos columns are
            blocked, everything else is open, so these tokens evolve exactly as in plain CLIP.
    """

    sos_rows: torch.Tensor
    other_rows: torch.Tensor


def build_recognition_attn_mask(bias: torch.Tensor) -> RecognitionAttnMask:
    """The recognition head's attention mask for an attention bias (B, H, Q, L).

    Only the Q sos rows differ per image and head; the other 1 + L rows share one row, which
    is broadcast instead of materialising the (N, N) mask of every image and head.
    """
    batch, heads, queries, length = bias.shape
    n = queries + 1 + length
    sos_rows = bias.new_full((batch, heads, queries, n), BLOCKED)
    diagonal = torch.arange(queries, device=bias.device)
    sos_rows[..., diagonal, diagonal] = 0.0
    sos_rows[..., queries + 1:] = bias
    other_rows = bias.new_zeros((1, 1, 1, n))
    other_rows[..., :queries] = BLOCKED
    return RecognitionAttnMask(sos_rows, other_rows)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, D) -> (B, heads, N, D / heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def biased_block_forward(block: nn.Module, x: torch.Tensor, mask: RecognitionAttnMask,
                         queries: int) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` on [sos, cls, patches] under ``mask``.

    The same function as ``block(x, attn_mask=full_mask)``, with the sos rows and the other
    rows attending in two ``scaled_dot_product_attention`` calls, each with its own mask.

    Args:
        block: the CLIP block (``ln_1``, ``attn`` an ``nn.MultiheadAttention``, ``ls_1``,
            ``ln_2``, ``mlp``, ``ls_2``).
        x: (B, N, D) tokens, sos first.
        mask: the rows of the additive mask.
        queries: Q, the number of sos tokens.
    Returns:
        (B, N, D).
    """
    attn = block.attn
    dropout = attn.dropout if block.training else 0.0
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_split_heads(t, attn.num_heads) for t in (q, k, v))
    sos = F.scaled_dot_product_attention(q[:, :, :queries], k, v, dropout_p=dropout,
                                         attn_mask=mask.sos_rows.to(q.dtype))
    others = F.scaled_dot_product_attention(q[:, :, queries:], k, v, dropout_p=dropout,
                                            attn_mask=mask.other_rows.to(q.dtype))
    out = torch.cat([sos, others], dim=2).transpose(1, 2).flatten(2)
    x = x + block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _check_plain_clip_block(block: nn.Module) -> None:
    attn = getattr(block, "attn", None)
    if (not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None
            or not attn.batch_first or hasattr(block, "ln_1_kv")):
        raise ValueError(f"The recognition head needs CLIP blocks with a batch-first packed "
                         f"nn.MultiheadAttention self-attention (open_clip's "
                         f"ResidualAttentionBlock), got {type(block).__name__}: this CLIP "
                         "architecture is not supported.")


class RecWithAttnBiasHead(nn.Module):
    """CLIP's remaining blocks, run on [sos tokens, cls, patches] with the attention bias."""

    SOS_FORMATS = ("cls_token", "learnable_token", "pos_embedding")

    def __init__(self, visual: nn.Module, first_layer_idx: int, frozen_exclude: Sequence[str],
                 num_queries: int, sos_token_format: str = "cls_token",
                 downsample_method: str = "max", cross_attn: bool = False):
        """
        Args:
            visual: open_clip ``VisionTransformer`` (modules shared, not copied).
            first_layer_idx: index of the first block of the head (FEATURE_LAST_LAYER_IDX).
            frozen_exclude: name fragments of parameters that stay trainable.
            num_queries: Q, the number of mask proposals.
            sos_token_format: "cls_token", "learnable_token" or "pos_embedding".
            downsample_method: how the bias is brought to CLIP's grid (REC_DOWNSAMPLE_METHOD).
            cross_attn: REC_CROSS_ATTN; only the default (False) is implemented.
        """
        super().__init__()
        if cross_attn:
            raise NotImplementedError("MODEL.SAN.REC_CROSS_ATTN True is not supported; the "
                                      "published SAN models use False.")
        if sos_token_format not in self.SOS_FORMATS:
            raise ValueError(f"Unknown SOS_TOKEN_FORMAT {sos_token_format!r}: use one of "
                             f"{self.SOS_FORMATS}.")
        if downsample_method not in ATTN_BIAS_DOWNSAMPLERS:
            raise ValueError(f"Unknown REC_DOWNSAMPLE_METHOD {downsample_method!r}: use one of "
                             f"{sorted(ATTN_BIAS_DOWNSAMPLERS)}.")
        self.resblocks = nn.ModuleList(visual.transformer.resblocks[first_layer_idx:])
        for block in self.resblocks:
            _check_plain_clip_block(block)
        self.ln_post = visual.ln_post
        self.proj = visual.proj
        self.num_heads = self.resblocks[0].attn.num_heads
        self.sos_token_format = sos_token_format
        self.downsample_method = downsample_method
        freeze_except(self, frozen_exclude)
        if sos_token_format != "cls_token":
            width = self.ln_post.normalized_shape[0]
            self.sos_token = nn.Parameter(torch.randn(num_queries, 1, width) * width ** -0.5)

    def forward(self, feature: ClipFeature, attn_biases: Sequence[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            feature: the extractor's last feature: cls (B, D), spatial (B, D, h, w).
            attn_biases: one (B, Hb, Q, hs, ws) bias per layer (one set is reused for all
                blocks); Hb is CLIP's head count or 1.
        Returns:
            (B, Q, E) L2-normalised mask embeddings.
        """
        batch, width, h, w = feature.spatial.shape
        masks = [self._attn_mask(bias, (h, w)) for bias in attn_biases]
        if len(masks) not in (1, len(self.resblocks)):
            raise ValueError(f"{len(masks)} attention-bias layers for {len(self.resblocks)} "
                             "recognition blocks: ATTN_BIAS.NUM_LAYERS must be 1 or equal to it.")
        queries = attn_biases[0].shape[2]
        sos = self._sos_tokens(feature.cls_token, queries)
        patches = feature.spatial.flatten(2).transpose(1, 2)
        x = torch.cat([sos, feature.cls_token[:, None], patches], dim=1)
        for i, block in enumerate(self.resblocks):
            x = biased_block_forward(block, x, masks[i if len(masks) > 1 else 0], queries)
        x = self.ln_post(x[:, :queries]) @ self.proj
        return F.normalize(x, dim=-1)

    def _sos_tokens(self, cls_token: torch.Tensor, queries: int) -> torch.Tensor:
        if self.sos_token_format == "cls_token":
            return cls_token[:, None].expand(-1, queries, -1)
        learned = self.sos_token[:, 0].expand(cls_token.shape[0], -1, -1)
        return learned + cls_token[:, None] if self.sos_token_format == "pos_embedding" else learned

    def _attn_mask(self, bias: torch.Tensor, size: Tuple[int, int]) -> RecognitionAttnMask:
        heads = bias.shape[1]
        if heads not in (1, self.num_heads):
            raise ValueError(f"The attention bias has {heads} heads and CLIP {self.num_heads}: "
                             "set MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS to CLIP's head count.")
        bias = downsample_attn_bias(bias, size, self.downsample_method)
        if heads == 1:
            bias = bias.expand(-1, self.num_heads, -1, -1, -1)
        return build_recognition_attn_mask(bias.flatten(3))

"""RegionwiseSideAdapterNetwork: a light ViT beside CLIP predicting masks and attention biases."""
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from ..clip_visual import ClipFeature
from ..layers import ChannelLayerNorm, resize_grid_pos_embed
from .build import SIDE_ADAPTER_REGISTRY
from .mask_decoder import MLPMaskDecoder
from .timm_vit import create_side_vit

__all__ = ["RegionwiseSideAdapterNetwork", "AddFusion", "parse_fusion_map"]


class AddFusion(nn.Module):
    """Adds a projected CLIP feature map to the side network's patch tokens."""

    def __init__(self, clip_channels: int, side_channels: int):
        super().__init__()
        self.input_proj = nn.Sequential(ChannelLayerNorm(clip_channels),
                                        nn.Conv2d(clip_channels, side_channels, kernel_size=1))
        weight_init.c2_xavier_fill(self.input_proj[1])

    def forward(self, x: torch.Tensor, clip_map: torch.Tensor, num_queries: int,
                grid: Tuple[int, int]) -> torch.Tensor:
        """
        Args:
            x: (B, Q + h_s * w_s, S) side tokens, queries first.
            clip_map: (B, D, h, w) CLIP patch tokens.
            grid: (h_s, w_s).
        """
        y = self.input_proj(clip_map)
        if tuple(y.shape[-2:]) != tuple(grid):
            y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
        patches = x[:, num_queries:] + y.flatten(2).transpose(1, 2).to(x.dtype)
        return torch.cat([x[:, :num_queries], patches], dim=1)


def parse_fusion_map(entries: Sequence[str]) -> Dict[int, int]:
    """["0->0", "3->1", ...] -> {side stage: CLIP feature index}."""
    mapping = {}
    for entry in entries:
        try:
            clip_idx, side_idx = (int(v) for v in entry.split("->"))
        except ValueError:
            raise ValueError(f"FUSION_MAP entry {entry!r} is not of the form 'clip->side'.") from None
        mapping[side_idx] = clip_idx
    return mapping


@SIDE_ADAPTER_REGISTRY.register()
class RegionwiseSideAdapterNetwork(nn.Module):
    """Side ViT with CLIP features fused in; decodes mask proposals and attention biases."""

    @configurable
    def __init__(self, *, vit_model: nn.Module, fusion_map: Dict[int, int], clip_channels: int,
                 num_queries: int, deep_supervision_idxs: Sequence[int],
                 mask_decoder: MLPMaskDecoder):
        """
        Args:
            vit_model: timm ``VisionTransformer`` without class token, head or final norm.
            fusion_map: {side stage s: CLIP feature index}; stage 0 is before the first block,
                stage k after block k.
            clip_channels: D, CLIP's width.
            num_queries: Q.
            deep_supervision_idxs: blocks (1-based) whose outputs are decoded in training; the
                last of them is decoded at inference.
            mask_decoder: decoder of (queries, patch map).
        """
        super().__init__()
        self.vit_model = vit_model
        width = vit_model.embed_dim
        depth = len(vit_model.blocks)
        bad = [s for s in fusion_map if not 0 <= s <= depth]
        if bad or not all(1 <= i <= depth for i in deep_supervision_idxs):
            raise ValueError(f"FUSION_MAP side stages must be in 0..{depth} and "
                             f"DEEP_SUPERVISION_IDXS in 1..{depth}.")
        self.fusion_map = dict(fusion_map)
        self.fusion_layers = nn.ModuleDict(
            {f"layer_{s}": AddFusion(clip_channels, width) for s in sorted(fusion_map)})
        self.num_queries = num_queries
        self.query_embed = nn.Parameter(torch.zeros(1, num_queries, width))
        self.query_pos_embed = nn.Parameter(torch.zeros(1, num_queries, width))
        nn.init.normal_(self.query_embed, std=0.02)
        nn.init.normal_(self.query_pos_embed, std=0.02)
        self.deep_supervision_idxs = sorted(deep_supervision_idxs)
        self.mask_decoder = mask_decoder
        self.patch_size = vit_model.patch_embed.proj.kernel_size[0]
        self.grid_size = tuple(vit_model.patch_embed.grid_size)

    @classmethod
    def from_config(cls, cfg, clip_channels: int):
        sa = cfg.MODEL.SIDE_ADAPTER
        if sa.FUSION_TYPE != "add":
            raise ValueError(f"Unknown SIDE_ADAPTER.FUSION_TYPE {sa.FUSION_TYPE!r}: only 'add'.")
        vit = create_side_vit(sa.VIT_NAME, sa.IMAGE_SIZE, sa.DROP_PATH_RATE, sa.PRETRAINED)
        decoder = MLPMaskDecoder(
            in_channels=vit.embed_dim,
            total_heads=sa.ATTN_BIAS.NUM_HEADS,
            total_layers=sa.ATTN_BIAS.NUM_LAYERS,
            embed_channels=sa.ATTN_BIAS.EMBED_CHANNELS,
            mlp_channels=sa.ATTN_BIAS.MLP_CHANNELS,
            mlp_num_layers=sa.ATTN_BIAS.MLP_NUM_LAYERS,
            rescale_attn_bias=sa.ATTN_BIAS.RESCALE_ATTN_BIAS,
        )
        return {
            "vit_model": vit,
            "fusion_map": parse_fusion_map(sa.FUSION_MAP),
            "clip_channels": clip_channels,
            "num_queries": sa.NUM_QUERIES,
            "deep_supervision_idxs": list(sa.DEEP_SUPERVISION_IDXS),
            "mask_decoder": decoder,
        }

    def forward(self, images: torch.Tensor, clip_features: Sequence[ClipFeature],
                ) -> Tuple[List[torch.Tensor], List[List[torch.Tensor]]]:
        """
        Args:
            images: (B, 3, H, W) normalised, full resolution.
            clip_features: CLIP features by index (index 0 after ``ln_pre``).
        Returns:
            Per decoded stage (earliest first): mask logits (B, Q, h_s, w_s), and attention
            biases (one (B, H, Q, h_s, w_s) per recognition layer). In eval mode only the last
            supervised stage is decoded.
        """
        stages = self.encode(images, clip_features)
        if not self.training:
            stages = stages[-1:]
        decoded = [self.mask_decoder(query, patch_map) for query, patch_map in stages]
        return [d[0] for d in decoded], [d[1] for d in decoded]

    def encode(self, images: torch.Tensor, clip_features: Sequence[ClipFeature],
               ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Runs the side ViT; returns (queries (B, Q, S), patch map (B, S, h_s, w_s)) per stage."""
        x = self.vit_model.patch_embed.proj(images)
        batch, width, h, w = x.shape
        x = self.vit_model.patch_embed.norm(x.flatten(2).transpose(1, 2))
        grid_pos = resize_grid_pos_embed(self.vit_model.pos_embed[0], self.grid_size, (h, w), 0)
        pos = torch.cat([self.query_pos_embed[0], grid_pos], dim=0)[None]
        x = torch.cat([self.query_embed.expand(batch, -1, -1), x], dim=1)
        x = self.vit_model.norm_pre(x + pos)
        x = self._fuse(0, x, clip_features, (h, w))

        outputs = []
        depth = len(self.vit_model.blocks)
        for index, block in enumerate(self.vit_model.blocks, start=1):
            x = block(x)
            x = self._fuse(index, x, clip_features, (h, w))
            if index in self.deep_supervision_idxs:
                patches = x[:, self.num_queries:].transpose(1, 2).reshape(batch, width, h, w)
                outputs.append((x[:, :self.num_queries], patches))
            if index < depth:
                x = x + pos
        return outputs

    def _fuse(self, stage: int, x, clip_features, grid):
        if stage not in self.fusion_map:
            return x
        clip_map = clip_features[self.fusion_map[stage]].spatial
        return self.fusion_layers[f"layer_{stage}"](x, clip_map, self.num_queries, grid)

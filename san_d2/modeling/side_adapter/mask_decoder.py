"""The side adapter's decoder: mask proposals and attention biases from query and patch tokens."""
from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP", "MLPMaskDecoder"]


class MLP(nn.Module):
    """Layers with ReLU between them; 1x1 convolutions on (B, C, H, W) maps when ``conv``."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int, conv: bool = False):
        super().__init__()
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        layer = (lambda i, o: nn.Conv2d(i, o, kernel_size=1)) if conv else nn.Linear
        self.layers = nn.ModuleList(layer(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MLPMaskDecoder(nn.Module):
    """Decodes (B, Q, S) queries and a (B, S, h, w) map into mask logits and attention biases."""

    def __init__(self, *, in_channels: int, total_heads: int, total_layers: int,
                 embed_channels: int, mlp_channels: int, mlp_num_layers: int,
                 rescale_attn_bias: bool):
        """
        Args:
            in_channels: S, the side network's width.
            total_heads: H, heads of the attention bias.
            total_layers: recognition layers that get their own bias (ATTN_BIAS.NUM_LAYERS).
            embed_channels: per-head bias embedding width.
            mlp_channels: hidden width of the three MLPs.
            mlp_num_layers: layers of each MLP.
            rescale_attn_bias: apply a learned affine map ``w * bias + b`` to the bias.
        """
        super().__init__()
        self.total_heads = total_heads
        self.total_layers = total_layers
        self.embed_channels = embed_channels
        self.query_mlp = MLP(in_channels, mlp_channels, embed_channels, mlp_num_layers)
        self.pix_mlp = MLP(in_channels, mlp_channels, embed_channels, mlp_num_layers, conv=True)
        self.attn_mlp = MLP(in_channels, mlp_channels, embed_channels * total_heads * total_layers,
                            mlp_num_layers, conv=True)
        self.bias_scaling = nn.Linear(1, 1) if rescale_attn_bias else nn.Identity()

    def forward(self, query: torch.Tensor, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            query: (B, Q, S) query tokens.
            x: (B, S, h, w) patch tokens.
        Returns:
            mask logits (B, Q, h, w) and, per recognition layer, an attention bias (B, H, Q, h, w).
        """
        query = self.query_mlp(query)
        mask_preds = torch.einsum("bqc,bchw->bqhw", query, self.pix_mlp(x))
        return mask_preds, list(self._attn_bias(query, x).unbind(dim=1))

    def _attn_bias(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, Q, C) embedded queries and (B, S, h, w) patches -> (B, L, H, Q, h, w) biases.

        The bias is ``s * query . (W a + b) + t`` per layer, head and pixel, with ``a`` the
        attention MLP's last hidden map, (W, b) its last 1x1 convolution and (s, t) the
        optional rescaling. The queries are multiplied with ``s W`` first: (Q x C) . (C x D)
        per head instead of the (L H C, h, w) map of ``W a``, about a third of the
        multiply-adds for SAN's sizes (Q = 100, C = D = 256, 40 x 40), and the constant terms
        are added by the last product itself.
        """
        hidden = x
        for layer in self.attn_mlp.layers[:-1]:
            hidden = F.relu(layer(hidden))
        last = self.attn_mlp.layers[-1]
        scale, shift = self._bias_rescaling()
        shape = (self.total_layers, self.total_heads, self.embed_channels)
        weight = last.weight.reshape(*shape, last.in_channels)
        query_weight = torch.einsum("bqc,lncd->blnqd", query, weight) * scale
        constant = torch.einsum("bqc,lnc->blnq", query, last.bias.reshape(shape)) * scale + shift
        batch, channels, h, w = hidden.shape
        bias = torch.baddbmm(constant.reshape(batch, -1, 1),
                             query_weight.reshape(batch, -1, channels), hidden.flatten(2))
        return bias.reshape(batch, *shape[:2], query.shape[1], h, w)

    def _bias_rescaling(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(s, t) of the learned ``s * bias + t``, or (1, 0) without rescaling."""
        if isinstance(self.bias_scaling, nn.Linear):
            return self.bias_scaling.weight.reshape(()), self.bias_scaling.bias.reshape(())
        one = self.attn_mlp.layers[-1].weight.new_ones(())
        return one, one * 0

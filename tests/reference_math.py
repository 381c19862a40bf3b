"""Independent float64 reference implementations used by the model tests.

Written from the definitions (PyTorch's resampling conventions, the attention formula), not
from san_d2's code.
"""
import math

import torch


def interp_matrix(in_size: int, out_size: int, mode: str, scale: float = None) -> torch.Tensor:
    """(out, in) float64 matrix of 1-D resampling with ``align_corners=False``.

    ``scale`` is input pixels per output pixel (default in/out); for a ``scale_factor`` call
    with ``recompute_scale_factor=False`` it is 1 / scale_factor.
    """
    scale = in_size / out_size if scale is None else scale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        src = (i + 0.5) * scale - 0.5
        if mode == "bilinear":
            src = max(src, 0.0)
            i0 = min(int(math.floor(src)), in_size - 1)
            i1 = min(i0 + 1, in_size - 1)
            frac = src - i0
            m[i, i0] += 1 - frac
            m[i, i1] += frac
        elif mode == "bicubic":
            a = -0.75
            base = math.floor(src)
            t = src - base
            weights = [
                ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                ((a + 2) * t - (a + 3)) * t * t + 1,
                ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
            ]
            for k, w in enumerate(weights):
                m[i, min(max(base - 1 + k, 0), in_size - 1)] += w
        else:
            raise ValueError(mode)
    return m


def resize2d(x: torch.Tensor, size, mode: str, scale=None) -> torch.Tensor:
    """Resamples the last two dims of ``x`` (float64) separably."""
    sh, sw = (None, None) if scale is None else scale
    mh = interp_matrix(x.shape[-2], size[0], mode, sh)
    mw = interp_matrix(x.shape[-1], size[1], mode, sw)
    return mh @ x.double() @ mw.T


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def clip_block(x, block, mask):
    """One open_clip residual block in float64: x (B, N, D), mask (B, H, N, N) additive."""
    p = {k: v.double() for k, v in block.state_dict().items()}
    heads = block.attn.num_heads
    b, n, d = x.shape
    h = layer_norm(x, p["ln_1.weight"], p["ln_1.bias"], block.ln_1.eps)
    qkv = h @ p["attn.in_proj_weight"].T + p["attn.in_proj_bias"]
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in qkv.split(d, dim=-1))
    logits = q @ k.transpose(-1, -2) / math.sqrt(d // heads) + mask
    attn = torch.softmax(logits, dim=-1) @ v
    x = x + attn.transpose(1, 2).reshape(b, n, d) @ p["attn.out_proj.weight"].T + p["attn.out_proj.bias"]
    h = layer_norm(x, p["ln_2.weight"], p["ln_2.bias"], block.ln_2.eps)
    h = h @ p["mlp.c_fc.weight"].T + p["mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU (the tiny CLIP config sets quick_gelu)
    return x + h @ p["mlp.c_proj.weight"].T + p["mlp.c_proj.bias"]

"""Semantic scores from mask proposals: resize, sigmoid and class combination, fused.

The plain computation (the paper's ``semantic_inference``) up-samples all Q mask logits to the
padded image size, crops and resizes them to the output size, applies a sigmoid and combines
them with the class probabilities: three full-resolution (Q, H, W) tensors per image before the
(K, H, W) result. Bilinear resizing with ``align_corners=False`` is linear and separable, so
the chain "up-sample, crop, resize" is one (H, h) matrix on the rows and one (W, w) matrix on
the columns. Here the rows are resized once at low resolution, and the output is produced in
bands of rows: each band's masks are resized along the columns, passed through the sigmoid and
multiplied with the class probabilities while they are still in cache. Same function; only the
floating-point summation order differs (about 1e-7).
"""
from typing import Optional, Tuple

import torch

from ..utils.memory import empty_for_writing

__all__ = [
    "bilinear_resize_matrix",
    "resize_crop_resize_matrix",
    "combine_masks_and_classes",
    "semantic_scores",
    "mask_probabilities",
]

# Elements of one band of resized masks: 8 MiB of float32 on CPU (measured fastest on a
# 2-core Xeon among 1-16 MiB: the bands stay cache-friendly and the matrix products large),
# much more on GPUs, where fewer and bigger kernels are what counts.
_BAND_ELEMENTS = {"cpu": 2**21, "cuda": 2**26}


def bilinear_resize_matrix(in_size: int, out_size: int, *, device=None) -> torch.Tensor:
    """The (out_size, in_size) float64 matrix of 1-D bilinear resizing, ``align_corners=False``.

    Row i holds the weights that ``F.interpolate(..., size=out_size, mode="bilinear",
    align_corners=False)`` gives output pixel i: source coordinate ``(i + 0.5) * in / out - 0.5``
    clamped at 0, its two neighbours (the upper one clamped at the border), linear weights. The
    scale and coordinates are computed in float32 as torch's CPU kernel does.
    """
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    index = torch.arange(out_size, dtype=torch.float32, device=device)
    source = ((index + 0.5) * scale.to(device) - 0.5).clamp(min=0)
    lower = source.long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    upper_weight = (source - lower).double()
    rows = torch.arange(out_size, device=device)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64, device=device)
    matrix.index_put_((rows, lower), 1 - upper_weight, accumulate=True)
    matrix.index_put_((rows, upper), upper_weight, accumulate=True)
    return matrix


def resize_crop_resize_matrix(mask_size: int, padded_size: int, image_size: int,
                              output_size: int, *, device=None) -> torch.Tensor:
    """One axis of "up-sample to the padded size, keep the first ``image_size``, resize to
    ``output_size``" as an (output_size, mask_size) float64 matrix."""
    matrix = bilinear_resize_matrix(mask_size, padded_size, device=device)[:image_size]
    if output_size != image_size:  # a same-size bilinear resize is the identity
        matrix = bilinear_resize_matrix(image_size, output_size, device=device) @ matrix
    return matrix


def combine_masks_and_classes(class_probs: torch.Tensor, mask_logits: torch.Tensor,
                              row_matrix: torch.Tensor, col_matrix: torch.Tensor,
                              band_rows: Optional[int] = None) -> torch.Tensor:
    """``einsum("qc,qhw->chw", class_probs, sigmoid(row_matrix @ mask_logits @ col_matrix.T))``
    without materialising the resized masks at full resolution.

    Args:
        class_probs: (Q, K) class probabilities of each proposal.
        mask_logits: (Q, h, w) mask logits.
        row_matrix: (H, h) resizing of the rows.
        col_matrix: (W, w) resizing of the columns.
        band_rows: output rows per band; default: about 8 MiB of masks per band on CPU.
    Returns:
        (K, H, W) scores, in ``class_probs``' dtype.
    """
    queries, classes = class_probs.shape
    height, width = row_matrix.shape[0], col_matrix.shape[0]
    dtype = class_probs.dtype
    if band_rows is None:
        budget = _BAND_ELEMENTS.get(class_probs.device.type, _BAND_ELEMENTS["cpu"])
        band_rows = max(1, budget // (queries * width))
    rows_resized = torch.matmul(row_matrix.to(dtype), mask_logits.to(dtype))  # (Q, H, w)
    col_matrix_t = col_matrix.to(dtype).T.contiguous()  # (w, W)
    weights = class_probs.T.contiguous()  # (K, Q)
    scores = empty_for_writing((classes, height * width), dtype=dtype, device=class_probs.device)
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        band = rows_resized[:, top:bottom].reshape(-1, rows_resized.shape[-1]) @ col_matrix_t
        band = band.sigmoid_().view(queries, (bottom - top) * width)
        torch.mm(weights, band, out=scores[:, top * width:bottom * width])
    return scores.view(classes, height, width)


def semantic_scores(class_probs: torch.Tensor, mask_logits: torch.Tensor,
                    padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int]) -> torch.Tensor:
    """Per-class scores at the output size, masks resized before combining (the SAN default).

    Args:
        class_probs: (Q, K) probabilities without the "no object" column.
        mask_logits: (Q, h, w) mask logits of the padded image.
        padded_size, image_size, output_size: (height, width) of the padded batch, of the
            image inside it, and of the wanted output.
    Returns:
        (K, *output_size).
    """
    device = class_probs.device
    rows = resize_crop_resize_matrix(mask_logits.shape[-2], padded_size[0], image_size[0],
                                     output_size[0], device=device)
    cols = resize_crop_resize_matrix(mask_logits.shape[-1], padded_size[1], image_size[1],
                                     output_size[1], device=device)
    return combine_masks_and_classes(class_probs, mask_logits, rows, cols)


def mask_probabilities(mask_logits: torch.Tensor, padded_size: Tuple[int, int],
                       image_size: Tuple[int, int], output_size: Tuple[int, int]) -> torch.Tensor:
    """(Q, h, w) mask logits of the padded image -> (Q, *output_size) mask probabilities:
    up-sampled to the padded size, cropped to the image, resized, then passed through the
    sigmoid (the masks SAN's default post-processing combines)."""
    device = mask_logits.device
    rows = resize_crop_resize_matrix(mask_logits.shape[-2], padded_size[0], image_size[0],
                                     output_size[0], device=device).to(mask_logits.dtype)
    cols = resize_crop_resize_matrix(mask_logits.shape[-1], padded_size[1], image_size[1],
                                     output_size[1], device=device).to(mask_logits.dtype)
    return torch.sigmoid(rows @ mask_logits @ cols.T)

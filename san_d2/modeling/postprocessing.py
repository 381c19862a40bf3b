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

When only the labels are needed (evaluation, drawing), :func:`semantic_labels` reduces each band
to its arg-max: the (K, H, W) scores are never held, only one band of them.
"""
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch
from detectron2.modeling.postprocessing import sem_seg_postprocess

from ..utils.memory import empty_for_writing

__all__ = [
    "bilinear_resize_matrix",
    "resize_crop_resize_matrix",
    "combine_masks_and_classes",
    "combined_labels",
    "resized_labels",
    "LabelMaps",
    "semantic_scores",
    "semantic_labels",
    "mask_probabilities",
]

# Elements of one band of resized masks: 8 MiB of float32 on CPU (measured fastest on a
# 2-core Xeon among 1-16 MiB: the bands stay cache-friendly and the matrix products large),
# much more on GPUs, where fewer and bigger kernels are what counts.
_BAND_ELEMENTS = {"cpu": 2**21, "cuda": 2**26}
# Elements of the scores reduced to labels at once: 1 MiB of float32 on CPU (half the L2 of
# a core), the whole band on GPUs.
_LABEL_CHUNK_ELEMENTS = {"cpu": 2**18, "cuda": 2**40}


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


def _axis_matrices(mask_logits: torch.Tensor, padded_size: Tuple[int, int],
                   image_size: Tuple[int, int], output_size: Tuple[int, int]
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (H, h) row and (W, w) column matrices of :func:`resize_crop_resize_matrix` that take
    (Q, h, w) masks of the padded image to the output size."""
    device = mask_logits.device
    rows = resize_crop_resize_matrix(mask_logits.shape[-2], padded_size[0], image_size[0],
                                     output_size[0], device=device)
    cols = resize_crop_resize_matrix(mask_logits.shape[-1], padded_size[1], image_size[1],
                                     output_size[1], device=device)
    return rows, cols


def _mask_bands(mask_logits: torch.Tensor, row_matrix: torch.Tensor, col_matrix: torch.Tensor,
                dtype: torch.dtype, band_rows: Optional[int] = None
                ) -> Iterator[Tuple[int, int, torch.Tensor]]:
    """(top, bottom, (Q, (bottom - top) * W) mask probabilities) for bands of output rows.

    The rows are resized once at low resolution; each band's columns are resized and passed
    through the sigmoid while they are in cache. Band boundaries depend only on the shapes, so
    every consumer of the bands sees the same floating-point values."""
    queries, width = mask_logits.shape[0], col_matrix.shape[0]
    if band_rows is None:
        budget = _BAND_ELEMENTS.get(mask_logits.device.type, _BAND_ELEMENTS["cpu"])
        band_rows = max(1, budget // (queries * width))
    rows_resized = torch.matmul(row_matrix.to(dtype), mask_logits.to(dtype))  # (Q, H, w)
    col_matrix_t = col_matrix.to(dtype).T.contiguous()  # (w, W)
    for top in range(0, row_matrix.shape[0], band_rows):
        bottom = min(top + band_rows, row_matrix.shape[0])
        band = rows_resized[:, top:bottom].reshape(-1, rows_resized.shape[-1]) @ col_matrix_t
        yield top, bottom, band.sigmoid_().view(queries, (bottom - top) * width)


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
    classes, dtype = class_probs.shape[1], class_probs.dtype
    height, width = row_matrix.shape[0], col_matrix.shape[0]
    weights = class_probs.T.contiguous()  # (K, Q)
    scores = empty_for_writing((classes, height * width), dtype=dtype, device=class_probs.device)
    for top, bottom, band in _mask_bands(mask_logits, row_matrix, col_matrix, dtype, band_rows):
        torch.mm(weights, band, out=scores[:, top * width:bottom * width])
    return scores.view(classes, height, width)


@dataclass
class LabelMaps:
    """What the scores of an image say per pixel, without the scores.

    Attributes:
        labels: (H, W) int64 arg-max class (the first of equal maxima, as ``argmax``).
        best: (H, W) the arg-max class's score.
        background: (H, W) the "no object" mass, when it was asked for.
    """

    labels: torch.Tensor
    best: torch.Tensor
    background: Optional[torch.Tensor] = None


def combined_labels(class_probs: torch.Tensor, mask_logits: torch.Tensor,
                    row_matrix: torch.Tensor, col_matrix: torch.Tensor, *,
                    with_background: bool = False, band_rows: Optional[int] = None) -> LabelMaps:
    """The arg-max of :func:`combine_masks_and_classes` band by band: the (K, H, W) scores
    never exist, only a few pixels of them at a time. Labels and best scores equal those of
    the full scores exactly (the same bands; each pixel's products are the same).

    Args:
        class_probs: (Q, K) or, ``with_background``, (Q, K + 1) with "no object" last.
    """
    height, width = row_matrix.shape[0], col_matrix.shape[0]
    weights = class_probs.T.contiguous()
    labels = torch.empty(height * width, dtype=torch.int64, device=class_probs.device)
    best = torch.empty(height * width, dtype=class_probs.dtype, device=class_probs.device)
    background = torch.empty_like(best) if with_background else None
    # Scores of a few pixels at a time stay in cache, where the arg-max over their classes is
    # as cheap as the product (over a whole band of 847 classes it took twice as long).
    step = max(1, _LABEL_CHUNK_ELEMENTS.get(class_probs.device.type, _LABEL_CHUNK_ELEMENTS["cpu"])
               // weights.shape[0])
    for top, bottom, band in _mask_bands(mask_logits, row_matrix, col_matrix, class_probs.dtype,
                                         band_rows):
        for first in range(0, band.shape[1], step):
            last = min(first + step, band.shape[1])
            pixels = slice(top * width + first, top * width + last)
            scores = weights @ band[:, first:last]
            if with_background:
                background[pixels] = scores[-1]
                scores = scores[:-1]
            torch.max(scores, dim=0, out=(best[pixels], labels[pixels]))
    return LabelMaps(labels.view(height, width), best.view(height, width),
                     None if background is None else background.view(height, width))


def resized_labels(scores: torch.Tensor, image_size: Tuple[int, int],
                   output_size: Tuple[int, int], *, with_background: bool = False,
                   pixels_per_chunk: int = 2**23) -> LabelMaps:
    """The arg-max of ``sem_seg_postprocess(scores, image_size, *output_size)`` (crop, then
    bilinear resize), resized a few classes at a time: memory grows with the output size,
    not with K x output size. Exact: each class is resized as on its own.

    Args:
        scores: (K, h, w) scores of the padded image, or (K + 1, h, w) with "no object" last.
    """
    classes = scores.shape[0] - int(with_background)
    chunk = max(1, pixels_per_chunk // (output_size[0] * output_size[1]))
    best = labels = None
    for first in range(0, classes, chunk):
        resized = sem_seg_postprocess(scores[first:min(first + chunk, classes)], image_size,
                                      *output_size)
        chunk_best, chunk_labels = resized.max(dim=0)
        if best is None:
            best, labels = chunk_best, chunk_labels
        else:
            better = chunk_best > best  # strict: earlier classes win ties, as in argmax
            best = torch.where(better, chunk_best, best)
            labels = torch.where(better, chunk_labels + first, labels)
    background = None
    if with_background:
        background = sem_seg_postprocess(scores[-1:], image_size, *output_size)[0]
    return LabelMaps(labels, best, background)


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
    rows, cols = _axis_matrices(mask_logits, padded_size, image_size, output_size)
    return combine_masks_and_classes(class_probs, mask_logits, rows, cols)


def semantic_labels(class_probs: torch.Tensor, mask_logits: torch.Tensor,
                    padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], *, with_background: bool = False) -> LabelMaps:
    """The arg-max of :func:`semantic_scores` without its (K, *output_size) result."""
    rows, cols = _axis_matrices(mask_logits, padded_size, image_size, output_size)
    return combined_labels(class_probs, mask_logits, rows, cols, with_background=with_background)


def mask_probabilities(mask_logits: torch.Tensor, padded_size: Tuple[int, int],
                       image_size: Tuple[int, int], output_size: Tuple[int, int]) -> torch.Tensor:
    """(Q, h, w) mask logits of the padded image -> (Q, *output_size) mask probabilities:
    up-sampled to the padded size, cropped to the image, resized, then passed through the
    sigmoid (the masks SAN's default post-processing combines)."""
    rows, cols = _axis_matrices(mask_logits, padded_size, image_size, output_size)
    rows, cols = rows.to(mask_logits.dtype), cols.to(mask_logits.dtype)
    return torch.sigmoid(rows @ mask_logits @ cols.T)

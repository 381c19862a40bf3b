"""Per-class scores from the image graph's outputs, in numpy, in either of SAN's two orders.

``before`` (MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE True, the paper's): the mask logits
are up-sampled to the padded size, cropped to the image and resized to the output size, then
``sigmoid`` and summed over proposals with the class probabilities as weights. ``after``
(mmseg's): the sum is taken at the padded size, then the per-class scores are cropped and
resized. Bilinear resizing (``align_corners=False``) of one axis is a matrix, so each chain of
resizes is one matrix per axis; the output is made in bands of rows to bound the memory.
"""
from typing import Tuple

import numpy as np

__all__ = ["bilinear_matrix", "class_probabilities", "semantic_scores"]

# Float32 elements of resized masks held at once (8 MiB), as san_d2 does on a CPU.
_BAND_ELEMENTS = 2**21


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64: torch's 1-D bilinear resize with ``align_corners=False``
    (source ``(i + 0.5) * in / out - 0.5`` clamped at 0, coordinates in float32)."""
    scale = np.float32(in_size / out_size)
    source = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
                        - np.float32(0.5), np.float32(0))
    below = np.minimum(source.astype(np.int64), in_size - 1)
    above = np.minimum(below + 1, in_size - 1)
    fraction = (source - below.astype(np.float32)).astype(np.float64)
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, below), 1.0 - fraction)
    np.add.at(matrix, (rows, above), fraction)
    return matrix


def _crop_then_resize(mask_size: int, padded: int, image: int, output: int) -> np.ndarray:
    """One axis of "to the padded size, the image's part of it, to the output size"."""
    matrix = bilinear_matrix(mask_size, padded)[:image]
    return matrix if output == image else bilinear_matrix(image, output) @ matrix


def class_probabilities(class_logits: np.ndarray) -> np.ndarray:
    """(Q, K + 1) logits -> (Q, K) softmax probabilities without the "no object" column."""
    shifted = np.exp(class_logits - class_logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True))[:, :-1]


def _weighted_masks(probs: np.ndarray, mask_logits: np.ndarray, rows: np.ndarray,
                    cols: np.ndarray) -> np.ndarray:
    """sum_q probs[q, k] * sigmoid(rows @ mask_logits[q] @ cols.T) -> (K, H, W) float32."""
    num_queries, mask_width = probs.shape[0], mask_logits.shape[-1]
    height, width = rows.shape[0], cols.shape[0]
    tall = np.matmul(rows.astype(np.float32), mask_logits)  # (Q, H, w)
    cols_t = np.ascontiguousarray(cols.T.astype(np.float32))
    weights = np.ascontiguousarray(probs.T)
    scores = np.empty((probs.shape[1], height * width), dtype=np.float32)
    band = max(1, _BAND_ELEMENTS // (num_queries * width))
    for top in range(0, height, band):
        stop = min(top + band, height)
        # One matrix product for the band's rows of all Q masks, then the sigmoid in place.
        masks = tall[:, top:stop].reshape(-1, mask_width) @ cols_t  # (Q * rows, W)
        with np.errstate(over="ignore"):  # exp overflows to inf for logits below -88: sigmoid 0
            np.exp(np.negative(masks, out=masks), out=masks)
        masks += 1.0
        np.reciprocal(masks, out=masks)
        scores[:, top * width:stop * width] = weights @ masks.reshape(num_queries, -1)
    return scores.reshape(-1, height, width)


def semantic_scores(class_logits: np.ndarray, mask_logits: np.ndarray, *,
                    padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], before: bool) -> np.ndarray:
    """(Q, K + 1) class logits and (Q, h, w) mask logits of one image -> (K, *output_size).

    Args:
        padded_size: (height, width) of the graph's input.
        image_size: the resized image's (height, width) inside it.
        output_size: the wanted (height, width), the original picture's.
        before: resize the masks before combining them with the classes (else after).
    """
    probs = class_probabilities(class_logits.astype(np.float32))
    masks = mask_logits.astype(np.float32)
    (h, w), (ph, pw), (ih, iw), (oh, ow) = masks.shape[-2:], padded_size, image_size, output_size
    if before:
        return _weighted_masks(probs, masks, _crop_then_resize(h, ph, ih, oh),
                               _crop_then_resize(w, pw, iw, ow))
    # Each output pixel reads only its own rows of the matrices: cropping them is cropping
    # the padded scores, without computing the padding.
    cropped = _weighted_masks(probs, masks, bilinear_matrix(h, ph)[:ih],
                              bilinear_matrix(w, pw)[:iw])
    if (ih, iw) == (oh, ow):
        return cropped
    rows = bilinear_matrix(ih, oh).astype(np.float32)
    cols_t = np.ascontiguousarray(bilinear_matrix(iw, ow).T.astype(np.float32))
    return np.matmul(np.matmul(rows, cropped), cols_t)

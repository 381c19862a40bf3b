#!/usr/bin/env python3
"""Prepare Pascal Context 459 (``pcontext_full``) for san_d2.

Writes, under the datasets root::

    pcontext_full/{train,val}/image/<name>.jpg   copies of VOC2010/JPEGImages/<name>.jpg
    pcontext_full/{train,val}/label/<name>.tif   16-bit TIFF (PIL mode I;16),
                                                 0..458 and 65535 = ignore

Label rule (DATASETS.md section 4): ``LabelMap - 1`` in uint16 with wraparound, so unlabeled 0
becomes 65535 and class k (labels.txt id k, 1..459) becomes k - 1. All 459 classes are kept.

Inputs and assumptions:

* Labels come from the Pascal-Context ``trainval/<name>.mat`` files (``LabelMap``, uint16,
  0 = unlabeled, 1..459), as in the published pipeline.
* The published pipeline lists the train/val images through the ``detail`` API (not on PyPI)
  over ``trainval_merged.json``. ASSUMPTION: that file is a JSON object whose ``images`` list
  has one dict per image with ``file_name`` (e.g. ``"2008_000002.jpg"``), ``image_id`` (int,
  e.g. 2008000002) and ``phase`` (``"train"``/``"val"``), which is what Detail's ``getImgs``
  filters on (checked against the detail API source, not against the file). Images of any other
  phase are ignored. Plain ``--train-list``/``--val-list`` text files (one image name per line)
  can be used instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    PCONTEXT_DOWNLOADS, PContextTarget, check_label_map, pcontext_main,
)

NUM_RAW_CLASSES = 459
IGNORE = 65535

DESCRIPTION = """\
Convert Pascal Context to the 459-class detectron2 layout
(pcontext_full/{train,val}/{image,label}, 16-bit TIFF labels, ignore 65535).

""" + PCONTEXT_DOWNLOADS


def convert_label_459(label_map: np.ndarray) -> np.ndarray:
    """Convert a Pascal-Context LabelMap to PC-459 train ids.

    Args:
        label_map: 2-D integer array, 0 = unlabeled, 1..459 = classes (labels.txt ids).

    Returns:
        uint16 array of the same shape: ``LabelMap - 1`` with wraparound (0 -> 65535).

    Raises:
        ValueError: if the array is not 2-D integer or holds values outside 0..459.
    """
    label_map = check_label_map(label_map, NUM_RAW_CLASSES)
    return label_map.astype(np.uint16) - np.uint16(1)


# A uint16 array saved as TIFF is a 16-bit (mode I;16) image.
TARGET = PContextTarget("pcontext_full", convert_label_459, ".tif", "TIFF")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        0 on success, 1 if nothing was converted, 2 on a missing or malformed input.
    """
    return pcontext_main(argv, DESCRIPTION, TARGET)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prepare Pascal Context 59 (``pcontext``) for san_d2.

Writes, under the datasets root::

    pcontext/{train,val}/image/<name>.jpg   copies of VOC2010/JPEGImages/<name>.jpg
    pcontext/{train,val}/label/<name>.png   uint8 (mode L): train ids 0..58, 255 = ignore

Label rule (DATASETS.md section 3): a pixel whose class, in the 459-class numbering, is one of
the 59 ids in ``PC59_IDS_459`` gets that id's rank in ascending order (0..58); every other pixel
(unlabeled 0 and the 400 other classes) becomes 255. No label file is skipped.

How this differs from the published pipeline, and what is assumed:

* The published script (SimSeg/ZegFormer style) uses the ``detail`` API, which is not on PyPI:
  ``Detail(trainval_merged.json, JPEGImages, phase).getMask(img)`` paints each annotation's
  ``category_id`` and asserts every value is one of the 60 ids (0 + the 59 classes), then maps
  value -> rank - 1 (uint8 wraparound, so 0 -> 255). This script builds the same maps from the
  Pascal-Context ``trainval/<name>.mat`` files (``LabelMap``: 0 = unlabeled, 1..459 = the
  classes of the dataset's ``labels.txt``) instead.
* ASSUMPTION 1: Detail's ``category_id`` equals the ``.mat`` LabelMap value (= labels.txt id).
  Evidence: (a) the detail API's hard-coded 59-class ``eval_orders`` list (read in a public
  copy of detail-api, PythonAPI/detail/__init__.py; VOC classes first, as 2, 23, 25, 31, ...)
  names exactly the PC-59 classes when each id k is looked up as entry k-1 of the alphabetical
  459-name list (accordion=1, aeroplane=2, ...); (b) the 59 ids of DATASETS.md section 3 looked
  up the same way give the PC-59 class list in order, with only raw 397 "table" renamed
  "diningtable"; (c) Detail's demo notebook prints its categories in the same alphabetical
  order as labels.txt. Not checked against the real files.
* ASSUMPTION 2: the Detail semantic mask restricted to those 59 ids is the ``.mat`` LabelMap
  restricted to them (i.e. ``trainval_merged.json`` holds the Pascal-Context annotations with
  every class outside the 59 dropped to background, nothing re-assigned between classes).
  The published assert (all values in the 60-id set) is consistent with this, but it could not
  be verified without the data; if Detail merged some fine classes into one of the 59, this
  script's labels differ on those pixels.
* ASSUMPTION 3 (split lists): ``trainval_merged.json`` is a JSON object whose ``images`` list
  has one dict per image with ``file_name`` (e.g. ``"2008_000002.jpg"``), ``image_id`` (int,
  e.g. 2008000002) and ``phase`` (``"train"``/``"val"``; Detail's ``getImgs`` filters on this
  field). This matches the detail API source; the file itself was not inspected. Images of
  any other phase are ignored. Plain ``--train-list``/``--val-list`` text files (one image name
  per line, as in ``2008_000002``) can be used instead of the JSON.
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

# The 59 classes kept, as ids in the 459-class numbering (labels.txt ids = LabelMap values).
PC59_IDS_459 = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
    113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
    324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454,
    458,
)
NUM_RAW_CLASSES = 459
IGNORE = 255

DESCRIPTION = """\
Convert Pascal Context to the 59-class detectron2 layout
(pcontext/{train,val}/{image,label}, uint8 PNG labels, ignore 255).

""" + PCONTEXT_DOWNLOADS


def build_lut_59() -> np.ndarray:
    """Build the 459-numbering -> PC-59 train-id lookup table.

    Returns:
        uint8 array of length 65536: entry ``PC59_IDS_459[k]`` is ``k``; all others are 255.
    """
    lut = np.full(65536, IGNORE, dtype=np.uint8)
    lut[np.array(sorted(PC59_IDS_459))] = np.arange(len(PC59_IDS_459), dtype=np.uint8)
    return lut


_LUT_59 = build_lut_59()


def convert_label_59(label_map: np.ndarray) -> np.ndarray:
    """Convert a Pascal-Context LabelMap to PC-59 train ids.

    Args:
        label_map: 2-D integer array, 0 = unlabeled, 1..459 = classes (labels.txt ids).

    Returns:
        uint8 array of the same shape: 0..58 for the 59 kept classes, 255 elsewhere.

    Raises:
        ValueError: if the array is not 2-D integer or holds values outside 0..459.
    """
    label_map = check_label_map(label_map, NUM_RAW_CLASSES)
    return _LUT_59[label_map.astype(np.int64)]


TARGET = PContextTarget("pcontext", convert_label_59, ".png", "PNG")


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

#!/usr/bin/env python3
"""Convert Pascal Context to the 59-class detectron2 layout used by san_d2.

Writes, under the datasets root:
  pcontext/{train,val}/image/<name>.jpg   copies of VOC2010/JPEGImages/<name>.jpg
  pcontext/{train,val}/label/<name>.png   uint8: train ids 0..58, 255 = ignore

Label rule: a pixel whose Pascal-Context class (the LabelMap value of trainval/<name>.mat, i.e.
the id in the dataset's 459-class labels.txt) is one of the 59 benchmark classes gets that
class's rank among the 59 ids in ascending order (0..58); every other pixel (unlabeled 0 and
the 400 other classes) becomes 255. No label is left out.
"""
# How this differs from MendelXu/SAN's datasets/prepare_pcontext_sem_seg_59cls.py, and what is
# assumed. That script paints each annotation's category_id with the PASCAL-in-Detail API
# (``Detail(trainval_merged.json, JPEGImages, phase).getMask(img)``, not on PyPI), asserts every
# value is one of the 60 ids (0 + the 59 classes) and maps value -> rank - 1 in uint8 (0 -> 255).
# This script builds the same maps from the .mat LabelMaps instead, assuming:
# 1. Detail's category_id equals the LabelMap value. Evidence: the Detail API's hard-coded
#    59-class eval order (VOC classes first: 2, 23, 25, 31, ...) names exactly the PC-59 classes
#    when id k is looked up as entry k - 1 of the alphabetical 459-name list (accordion = 1,
#    aeroplane = 2, ...); PC59_IDS_459 looked up the same way gives the PC-59 class list in
#    order, with only 397 "table" named "diningtable"; Detail's demo notebook lists its
#    categories in the same alphabetical order.
# 2. Detail's mask restricted to those 59 ids is the LabelMap restricted to them, i.e. the JSON
#    drops the other classes to background without merging any into the 59. The published
#    assert is consistent with this; if Detail merged fine classes into one of the 59, the
#    labels differ on those pixels. Neither was checked against the real files.
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import PContextTarget, pcontext_main  # noqa: E402

# The 59 classes kept, as LabelMap values (labels.txt ids).
PC59_IDS_459 = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
    113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
    324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454,
    458,
)
IGNORE = 255

# Indexed by LabelMap value; covers every uint16.
_TRAIN_ID_OF_RAW = np.full(65536, IGNORE, dtype=np.uint8)
_TRAIN_ID_OF_RAW[sorted(PC59_IDS_459)] = np.arange(len(PC59_IDS_459), dtype=np.uint8)


def convert_label_59(label_map: np.ndarray) -> np.ndarray:
    """Maps LabelMap values to train ids: the 59 kept ids to their rank, the rest to 255."""
    return _TRAIN_ID_OF_RAW[label_map.astype(np.int64)]


main = pcontext_main(__doc__, PContextTarget("pcontext", convert_label_59, ".png", "PNG"))

if __name__ == "__main__":
    sys.exit(main())

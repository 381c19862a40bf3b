#!/usr/bin/env python3
"""Convert COCO-Stuff-164k label maps to the 171-class detectron2 format used by san_d2.

Downloads, unpacked under <root>/coco/:
  train2017.zip, val2017.zip        http://images.cocodataset.org/zips/
                                    -> coco/train2017/*.jpg, coco/val2017/*.jpg
  stuffthingmaps_trainval2017.zip   COCO-Stuff site (https://github.com/nightrome/cocostuff)
                                    -> coco/stuffthingmaps/{train2017,val2017}/*.png

Reads coco/stuffthingmaps/{train2017,val2017}/*.png (value = COCO category id - 1, 255 =
unlabeled) and writes coco/stuffthingmaps_detectron2/{train2017,val2017}/*.png: uint8 train ids
0..170 in ascending COCO id order, 255 = ignore. Labels that would be entirely 255 are not
written. Only the label zip is needed for the conversion; the image folders, when present, are
used to report images without a label. The rule is that of SimSeg's (MendelXu/zsseg.baseline)
datasets/prepare_coco_stuff_164k_sem_seg.py, which SAN's data preparation follows.
"""
import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    LabelPairs, compare_with_images, convert_label_files, lookup_train_ids, same_name_pairs,
    script_main,
)

SPLITS = ("train2017", "val2017")
IGNORE_LABEL = 255
# Raw values are COCO category ids minus 1. COCO never used the ids 12, 26, 29, 30, 45, 66, 68,
# 69, 71, 83 and 91, so their raw values never occur; the other 171 values up to 181 are classes.
UNUSED_RAW_VALUES = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
USED_RAW_VALUES = tuple(v for v in range(182) if v not in UNUSED_RAW_VALUES)
NUM_CLASSES = len(USED_RAW_VALUES)  # 171

_TRAIN_ID_OF_RAW = np.full(256, IGNORE_LABEL, dtype=np.uint8)
_TRAIN_ID_OF_RAW[list(USED_RAW_VALUES)] = np.arange(NUM_CLASSES, dtype=np.uint8)

IMAGES_HINT = "download {split}.zip from http://images.cocodataset.org/zips/ and unzip it in {coco}"
LABELS_HINT = (
    "stuffthingmaps_trainval2017.zip from the COCO-Stuff site "
    "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
    "stuffthingmaps_trainval2017.zip, linked from https://github.com/nightrome/cocostuff; "
    "unzip it into {labels})"
)


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps raw values to train ids: the 171 used ones to their rank 0..170, the others to 255."""
    return lookup_train_ids(label, _TRAIN_ID_OF_RAW, IGNORE_LABEL)


def check_images(split: str, pairs: LabelPairs, coco_dir: Path) -> None:
    """Reports the images of coco/<split>/ without a label and the labels without an image."""
    remedy = IMAGES_HINT.format(split=split, coco=coco_dir)
    compare_with_images(coco_dir / split, pairs[split], remedy)


def run(args: argparse.Namespace) -> int:
    """Converts coco/stuffthingmaps/ into coco/stuffthingmaps_detectron2/."""
    coco_dir = args.datasets_root / "coco"
    download = LABELS_HINT.format(labels=coco_dir / "stuffthingmaps")
    pairs = same_name_pairs(coco_dir / "stuffthingmaps", coco_dir / "stuffthingmaps_detectron2",
                            SPLITS, download)
    return convert_label_files(pairs, convert_label, args.overwrite, "raw labels",
                               skip_all=IGNORE_LABEL,
                               check_split=partial(check_images, pairs=pairs, coco_dir=coco_dir))


main = script_main(__doc__, run)

if __name__ == "__main__":
    sys.exit(main())

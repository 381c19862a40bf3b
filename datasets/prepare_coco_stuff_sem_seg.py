#!/usr/bin/env python3
"""Convert COCO-Stuff-164k label maps to the 171-class detectron2 format used by san_d2.

Standalone apart from _prepare_common.py next to it: needs only numpy, Pillow and tqdm. Run with
--help for the downloads.
"""
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    SplitCounts, compare_with_images, convert_splits, converted_any, list_pngs,
    lookup_train_ids, parse_root_and_overwrite, print_counts, run_reporting_errors,
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

IMAGES_HINT = "{split}.zip from http://images.cocodataset.org/zips/ (unzip it into {coco})"
LABELS_HINT = (
    "stuffthingmaps_trainval2017.zip from the COCO-Stuff site "
    "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
    "stuffthingmaps_trainval2017.zip, linked from https://github.com/nightrome/cocostuff; "
    "unzip it into {labels})"
)

DESCRIPTION = """\
Convert COCO-Stuff-164k label maps to the 171-class detectron2 format used by san_d2.

Downloads, unpacked under DATASETS_ROOT/coco/:
  train2017.zip, val2017.zip        http://images.cocodataset.org/zips/
                                    -> coco/train2017/*.jpg, coco/val2017/*.jpg
  stuffthingmaps_trainval2017.zip   COCO-Stuff site (https://github.com/nightrome/cocostuff)
                                    -> coco/stuffthingmaps/{train2017,val2017}/*.png

Reads coco/stuffthingmaps/{train2017,val2017}/*.png (value = COCO category id - 1, 255 =
unlabeled) and writes coco/stuffthingmaps_detectron2/{train2017,val2017}/*.png: uint8 train ids
0..170 in ascending COCO id order, 255 = ignore. Labels that would be entirely 255 are not
written. Only the label zip is needed for the conversion; the image folders, when present, are
used to report images without a label.
"""


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw COCO-Stuff label map to train ids.

    Args:
        label: Integer array of raw values (COCO category id - 1, 255 = unlabeled).

    Returns:
        A uint8 array of the same shape: the 171 used raw values become their rank 0..170, every
        other value becomes 255.

    Raises:
        ValueError: The array is not integer.
    """
    return lookup_train_ids(label, _TRAIN_ID_OF_RAW, IGNORE_LABEL)


def list_raw_labels(coco_dir: Path, split: str) -> list:
    """Lists the raw label PNGs of a split, failing clearly when there are none.

    Args:
        coco_dir: DATASETS_ROOT/coco.
        split: "train2017" or "val2017".

    Returns:
        The sorted PNG paths.

    Raises:
        PrepareError: The folder is missing or holds no PNG.
    """
    hint = LABELS_HINT.format(labels=coco_dir / "stuffthingmaps")
    return list_pngs(coco_dir / "stuffthingmaps" / split, hint)


def report_split(split: str, counts: SplitCounts, raw_labels: list, coco_dir: Path) -> bool:
    """Prints the summary of one split and checks its counts.

    Args:
        split: The split name.
        counts: What the conversion did.
        raw_labels: The raw label files of the split.
        coco_dir: DATASETS_ROOT/coco, where the images of the split are looked for.

    Returns:
        True when the split has at least one converted label.
    """
    print_counts(split, counts, "raw labels", len(raw_labels))
    image_dir = coco_dir / split
    images_hint = IMAGES_HINT.format(split=split, coco=coco_dir)
    if image_dir.is_dir():
        compare_with_images(image_dir, raw_labels, "raw label", "raw labels",
                            download=f"; download {images_hint}")
    else:
        print(f"  note: {image_dir} not found, images not checked; download "
              f"{images_hint} before training or evaluating")
    return converted_any(counts, f"no label of {split} was converted "
                         f"(all {counts.seen} raw labels are entirely unlabeled)")


def parse_args(argv):
    """Parses ``[datasets_root] [--overwrite]``.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        The namespace: ``datasets_root`` (the folder holding coco/) and
        ``overwrite``.
    """
    return parse_root_and_overwrite(argv, DESCRIPTION, "coco/")


def run(args) -> int:
    """Converts coco/stuffthingmaps/{train2017,val2017} into coco/stuffthingmaps_detectron2/.

    Prints the summary of each split.

    Args:
        args: The namespace of ``parse_args``.

    Returns:
        The exit code: 0, or 1 when a split converted nothing.

    Raises:
        PrepareError: An input is missing or malformed.
    """
    coco_dir = args.datasets_root / "coco"
    raw_labels = {split: list_raw_labels(coco_dir, split) for split in SPLITS}
    output_dir = coco_dir / "stuffthingmaps_detectron2"
    pairs = {split: [(path, output_dir / split / path.name) for path in raw_labels[split]]
             for split in SPLITS}
    return convert_splits(
        pairs, convert_label, args.overwrite,
        lambda split, counts: report_split(split, counts, raw_labels[split], coco_dir),
        skip_all=IGNORE_LABEL)


def main(argv=None) -> int:
    """Converts both splits and prints the count check.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        0 on success, 1 when an input is missing or malformed or a split converted nothing.
    """
    args = parse_args(argv)
    return run_reporting_errors(lambda: run(args), error_code=1)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert ADE20K-150 label maps to the detectron2 format used by san_d2.

Download, unzipped into <root>/:
  ADEChallengeData2016.zip   http://sceneparsing.csail.mit.edu/
                             http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip
                             -> ADEChallengeData2016/images/{training,validation}/*.jpg
                                ADEChallengeData2016/annotations/{training,validation}/*.png

Reads ADEChallengeData2016/annotations/{training,validation}/*.png (uint8, 0 = other,
1..150 = classes) and writes ADEChallengeData2016/annotations_detectron2/{training,validation}/
with the same names: value - 1, so the classes become 0..149 and "other" becomes 255 (ignore).
Every label is written, including entirely ignored ones, as detectron2's
datasets/prepare_ade20k_sem_seg.py does.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    compare_with_images, convert_label_files, same_name_pairs, script_main,
)

SPLITS = ("training", "validation")
ADE_HINT = (
    "ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/"
    "ADEChallengeData2016.zip, linked from http://sceneparsing.csail.mit.edu/) and unzip it into "
    "{root}"
)


def convert_label(label: np.ndarray) -> np.ndarray:
    """Returns ``label - 1`` in uint8, so that 0 (other) wraps around to 255.

    Raises:
        ValueError: The label is not uint8.
    """
    label = np.asarray(label)
    if label.dtype != np.uint8:
        raise ValueError(f"ADE20K annotations must be uint8, got dtype {label.dtype}")
    return label - np.uint8(1)


def run(args: argparse.Namespace) -> int:
    """Converts ADEChallengeData2016/annotations/ into annotations_detectron2/."""
    ade_dir = args.datasets_root / "ADEChallengeData2016"
    pairs = same_name_pairs(ade_dir / "annotations", ade_dir / "annotations_detectron2", SPLITS,
                            ADE_HINT.format(root=args.datasets_root))
    remedy = "unzip ADEChallengeData2016.zip fully (it holds the images too)"
    return convert_label_files(
        pairs, convert_label, args.overwrite, "annotations",
        check_split=lambda split: compare_with_images(ade_dir / "images" / split, pairs[split],
                                                      remedy))


main = script_main(__doc__, run)

if __name__ == "__main__":
    sys.exit(main())
